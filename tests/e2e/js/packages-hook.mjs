// A module resolution hook (node:module register) for files outside this folder: the
// client recipes in docs/examples/clients import graphql-ws, ws, @apollo/client...,
// which are installed here. A bare import node cannot resolve from the importing file
// is resolved from this folder instead, so the recipes run unchanged, from where they are.
const HERE = new URL("./", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const bare = !/^(\.|\/|[a-z][a-z0-9+.-]*:)/i.test(specifier);
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !bare) throw error;
    return nextResolve(specifier, { ...context, parentURL: HERE });
  }
}
