import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  // the SDL exported from the Django project (manage.py gqlsync schema)
  schema: "schema.graphql",
  // the operations, written with graphql() in the app's modules
  documents: ["src/*.ts"],
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: { useTypeImports: true },
    },
  },
  // imports with a .js extension, as "module": "NodeNext" (and Node's ESM) want them
  emitLegacyCommonJSImports: false,
};

export default config;
