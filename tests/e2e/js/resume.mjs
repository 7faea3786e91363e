// Drives a client recipe of docs/examples/clients (resume-<client>.mjs) for
// tests/e2e/test_resume_clients.py:
//
//   node resume.mjs --recipe graphql-ws|apollo|urql --http URL --ws URL
//        [--cursor C --copy '<json [[id, node], ...]>'] [--retry-delay MS]
//
// It calls the recipe's follow() and prints one JSON line per thing that happens:
//
//   {"event": "ready", "cursor": ..., "size": N}      follow() returned
//   {"event": "change", "op", "id", "cursor", "node"} an event was folded
//   {"event": "refetch", "size": N}                   the query refilled the copy
//   {"event": "resync", "errors": [...]}              the server said RESYNC
//   {"event": "interrupted", "reason": "..."}         the subscription was cut
//   {"event": "snapshot", "copy": [...], "cursor"}    answer to {"do": "snapshot"}
//   {"event": "done", "do": ...}                      a command was carried out
//
// Commands, one JSON object per line on stdin:
//   {"do": "target", "http": URL, "ws": URL}  where the next connect goes
//   {"do": "disconnect"} / {"do": "reconnect"} / {"do": "snapshot"}
// It exits when stdin closes (or after --timeout seconds), stopping the recipe.
import { register } from "node:module";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { emit, plainErrors } from "./protocol.mjs";

register("./packages-hook.mjs", import.meta.url);

const { values } = parseArgs({
  options: {
    recipe: { type: "string" },
    http: { type: "string" },
    ws: { type: "string" },
    cursor: { type: "string" },
    copy: { type: "string", default: "[]" },
    "retry-delay": { type: "string", default: "200" },
    timeout: { type: "string", default: "120" },
  },
});
const recipe = new URL(`../../../docs/examples/clients/resume-${values.recipe}.mjs`,
                       import.meta.url);
const { follow } = await import(recipe.href); // after register(): through the hook

const target = { http: values.http, ws: values.ws };
const plain = (node) => {
  const { __typename, ...rest } = node; // Apollo adds it
  return rest;
};
const saved = values.cursor === undefined ? undefined
  : { cursor: values.cursor, copy: JSON.parse(values.copy) };

let exiting = false;
let books = null;
function exit(reason) {
  if (exiting) return;
  exiting = true;
  emit({ event: "exit", reason });
  try {
    books?.stop();
  } catch {
    // already gone
  }
  setTimeout(() => process.exit(0), 100).unref();
}
setTimeout(() => exit("timeout"), Number(values.timeout) * 1000).unref();
process.on("uncaughtException", (error) => {
  emit({ event: "uncaught", errors: plainErrors(error) });
});

books = await follow({
  httpUrl: () => target.http,
  wsUrl: () => target.ws,
  saved,
  retryDelay: Number(values["retry-delay"]),
  on: {
    event: ({ op, id, cursor, node }) =>
      emit({ event: "change", op, id, cursor, node: plain(node) }),
    refetch: (copy) => emit({ event: "refetch", size: copy.size }),
    resync: (errors) => emit({ event: "resync", errors: plainErrors(errors) }),
    interrupted: (why) => emit({ event: "interrupted", reason: plainErrors(why ?? "completed") }),
  },
});
emit({ event: "ready", cursor: books.cursor, size: books.copy.size });

const commands = createInterface({ input: process.stdin });
commands.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.do === "target") Object.assign(target, { http: command.http, ws: command.ws });
  else if (command.do === "disconnect") books.disconnect();
  else if (command.do === "reconnect") books.reconnect();
  else if (command.do === "snapshot") {
    const copy = [...books.copy.values()].map(plain);
    emit({ event: "snapshot", copy, cursor: books.cursor });
    return;
  }
  emit({ event: "done", do: command.do });
});
commands.on("close", () => exit("stdin"));
