// The tiny protocol between the Python e2e tests and the client scripts.
//
// Every script is run as
//
//   node <client>.mjs --url ws://host:port/graphql/ --query '<document>'
//        [--variables '<json>'] [--token <token>] [--count N] [--timeout SECONDS]
//
// It connects with its client library (the token goes into connectionParams as
// {"authorization": "Bearer <token>"}), subscribes, and prints one JSON line per thing
// that happens, flushed at once:
//
//   {"event": "next", "data": {...}, "errors": [...]}   a result (errors only if any)
//   {"event": "error", "errors": [...]}                 the operation failed
//   {"event": "complete"}                               the server completed it
//   {"event": "closed", "code": 4403, "reason": "..."}  the socket closed
//   {"event": "exit", "reason": "count" | "timeout" | "stdin"}
//
// It exits after N results ("next" or "error"; --count 0 means no limit), after
// --timeout seconds (default 15), or when its stdin closes: the test never waits on a
// stuck client and a dead test never leaves one behind.

import { parseArgs } from "node:util";

export function options() {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      query: { type: "string" },
      variables: { type: "string", default: "{}" },
      token: { type: "string", default: "" },
      count: { type: "string", default: "0" },
      timeout: { type: "string", default: "15" },
    },
  });
  if (!values.url || !values.query) {
    process.stderr.write("usage: node <client>.mjs --url WS_URL --query DOCUMENT [...]\n");
    process.exit(2);
  }
  return {
    url: values.url,
    query: values.query,
    variables: JSON.parse(values.variables),
    token: values.token || null,
    count: Number(values.count),
    timeout: Number(values.timeout),
  };
}

/** connectionParams carrying the token, as gqlsync reads it. */
export function connectionParams(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function emit(message) {
  // stdout is a pipe: writes are synchronous on Linux, so each line is out at once
  process.stdout.write(JSON.stringify(message) + "\n");
}

/** An error of any client library as plain GraphQL-like errors. */
export function plainErrors(error) {
  if (Array.isArray(error)) return error.map(plainError);
  if (error && Array.isArray(error.errors)) return error.errors.map(plainError);
  if (error && Array.isArray(error.graphQLErrors) && error.graphQLErrors.length) {
    return error.graphQLErrors.map(plainError);
  }
  if (error && typeof error.code === "number" && "reason" in error) {
    return [{ message: `socket closed: ${error.code} ${error.reason}`, closeCode: error.code }];
  }
  return [plainError(error)];
}

function plainError(error) {
  if (error && typeof error === "object") {
    const plain = { message: String(error.message ?? error) };
    if (error.path) plain.path = error.path;
    if (error.extensions) plain.extensions = error.extensions;
    return plain;
  }
  return { message: String(error) };
}

/**
 * Run one client: `start(settings, sink)` subscribes and returns a cleanup function.
 * The sink counts results and ends the process after `count` of them.
 */
export function run(start) {
  const settings = options();
  let results = 0;
  let cleanup = () => {};
  let exiting = false;

  const exit = (reason) => {
    if (exiting) return;
    exiting = true;
    emit({ event: "exit", reason });
    try {
      cleanup();
    } catch {
      // the client may already be gone; nothing to clean then
    }
    // let the client send its "complete"/close frames, then go
    setTimeout(() => process.exit(0), 100).unref();
  };
  const counted = () => {
    results += 1;
    if (settings.count > 0 && results >= settings.count) exit("count");
  };
  const sink = {
    /** Count a result printed by the script itself. */
    count: counted,
    next(data, errors) {
      const message = { event: "next", data: data ?? null };
      if (errors && errors.length) message.errors = errors;
      emit(message);
      counted();
    },
    error(errors) {
      emit({ event: "error", errors });
      counted();
    },
    complete() {
      emit({ event: "complete" });
    },
    closed(code, reason) {
      emit({ event: "closed", code, reason: reason ? String(reason) : "" });
    },
  };

  setTimeout(() => exit("timeout"), settings.timeout * 1000).unref();
  process.stdin.on("end", () => exit("stdin"));
  process.stdin.on("close", () => exit("stdin"));
  process.stdin.resume();
  // an unhandled client error is a line for the test to see, not a silent death
  process.on("uncaughtException", (error) => {
    emit({ event: "error", errors: plainErrors(error), uncaught: true });
  });

  cleanup = start(settings, sink) || cleanup;
}
