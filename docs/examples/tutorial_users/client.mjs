// node client.mjs alice alice-pass        (no arguments: an anonymous client)
//
// Signs in with the login mutation, lists the messages the user may read over HTTP
// (the token in an Authorization header), then follows their changes over WebSocket
// (the token in connectionParams), from the cursor the list was read at: a change
// committed while the client was connecting arrives first. Prints one JSON line per
// answer.
//
//   npm install graphql-ws ws
import { createClient } from "graphql-ws";
import WebSocket from "ws"; // Node 20 has no global WebSocket (browsers and Node 22+ do)

const url = process.env.GRAPHQL_URL ?? "http://127.0.0.1:8000/graphql/";
const [username, password] = process.argv.slice(2);

async function graphql(query, variables, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

let token = null;
if (username) {
  const login = await graphql(
    "mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
    { u: username, p: password },
  );
  if (login.errors) throw new Error(login.errors[0].message);
  token = login.data.login.token;
}

// the cursor first: fields of a query resolve in order
const messages = await graphql(
  "{ messagesCursor messages { id text room { name } } }", {}, token);
console.log(JSON.stringify({ messages }));

const client = createClient({
  url: url.replace(/^http/, "ws"),
  webSocketImpl: WebSocket,
  connectionParams: token ? { authorization: `Bearer ${token}` } : {},
});
try {
  const changes = client.iterate({
    query: `subscription ($after: String) {
      messageChanged(after: $after) { op node { id text room { name } } } }`,
    variables: { after: messages.data?.messagesCursor ?? null },
  });
  for await (const result of changes) {
    console.log(JSON.stringify({ messageChanged: result }));
  }
} catch (errors) {
  // a closed socket (code 4403: the token was refused) or an invalid document
  console.log(JSON.stringify({ failed: String(errors?.reason ?? JSON.stringify(errors)) }));
} finally {
  await client.dispose();
}
