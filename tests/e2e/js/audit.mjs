// graphql-http's GraphQL-over-HTTP server audit against a running server.
//
//   node audit.mjs --url http://127.0.0.1:8000/graphql/
//
// Prints one JSON array: every audit's {id, name, status, reason?, status_code?}
// (status "ok", "notice", "warn" or "error"); tests/e2e/test_graphql_http_audit.py
// asserts that none is a warning or an error.
import { auditServer } from "graphql-http";

const at = process.argv.indexOf("--url");
const url = at > 0 ? process.argv[at + 1] : undefined;
if (!url) {
  console.error("usage: node audit.mjs --url <GraphQL endpoint>");
  process.exit(2);
}

const results = await auditServer({ url });
console.log(
  JSON.stringify(
    results.map((result) => ({
      id: result.id,
      name: result.name,
      status: result.status,
      ...(result.status === "ok"
        ? {}
        : { reason: result.reason, status_code: result.response?.status }),
    })),
  ),
);
