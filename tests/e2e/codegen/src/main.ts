// Drives the recipe's client for tests/e2e/test_codegen.py, printing JSON lines:
// `node dist/main.js <ws url> <text>` signs in as alice, subscribes to #general and says
// "subscribed"; on a line on stdin (the server has the subscription by then), it sends
// <text> and prints the event that brings it back.
import { createInterface } from "node:readline";

import { describe, roomMessages, roomNames, send, signIn } from "./client.js";

const [url, text] = process.argv.slice(2);
if (!url || !text) throw new Error("usage: node dist/main.js <ws url> <text>");
const client = await signIn(url, "alice", "alice-pass");
const rooms = await roomNames(client);
const events = roomMessages(client, "general");
const first = events.next(); // subscribes
console.log(JSON.stringify({ rooms, subscribed: true }));
for await (const _ of createInterface({ input: process.stdin })) break;
process.stdin.destroy(); // nothing more to read: let the process end
const id = await send(client, "general", text);
const { value: event } = await first;
console.log(JSON.stringify({ id, event, line: event && describe(event) }));
await events.return(undefined);
await client.dispose();
