// Print every change to the books as it happens, with graphql-ws (Node 20 or later):
//
//   npm install graphql-ws ws
//   node book-changes.mjs
//
// GRAPHQL_URL: another server than the demo's. GQLSYNC_TOKEN (optional): connect as the
// token's user; without one the connection is anonymous, which bookChanged allows.
import { createClient } from "graphql-ws";
import WebSocket from "ws"; // Node 20 has no global WebSocket (browsers and Node 22+ do)

const url = process.env.GRAPHQL_URL ?? "ws://127.0.0.1:8000/graphql/";
const token = process.env.GQLSYNC_TOKEN;

const client = createClient({
  url,
  webSocketImpl: WebSocket, // in a browser, leave this out
  // a token only if there is one: "Bearer undefined" would be refused (close code 4403)
  connectionParams: token ? { authorization: `Bearer ${token}` } : {},
});

for await (const result of client.iterate({
  query: "subscription { bookChanged { op id node { title } } }",
})) {
  if (result.errors) {
    // refused (not signed in, not allowed, a bad argument): no data, the reasons in errors
    console.error(`refused: ${JSON.stringify(result.errors)}`);
    process.exitCode = 1;
    break; // ends the subscription
  }
  console.log(JSON.stringify(result.data.bookChanged)); // {"op":"CREATED","id":"5",...}
}
await client.dispose(); // closes the connection: the script ends
