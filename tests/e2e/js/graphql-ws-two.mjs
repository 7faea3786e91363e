// Two subscriptions multiplexed on ONE graphql-ws connection: "first" is disposed
// after its first result, "second" must keep receiving. Same options as graphql-ws.mjs
// (--query is used for both; --count counts the results of "second"). Every line has a
// "label" of "first" or "second"; disposing "first" prints {"event": "disposed"}.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { connectionParams, plainErrors, run } from "./protocol.mjs";

run(({ url, query, variables, token }, sink) => {
  let connections = 0;
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: connectionParams(token),
    retryAttempts: 0,
    on: {
      connected: () => {
        connections += 1;
      },
      closed: (event) => sink.closed(event.code, event.reason),
    },
  });
  const print = (label, message) => {
    process.stdout.write(JSON.stringify({ ...message, label, connections }) + "\n");
  };
  const disposeFirst = client.subscribe(
    { query, variables },
    {
      next: (result) => {
        print("first", { event: "next", data: result.data });
        disposeFirst();
        print("first", { event: "disposed" });
      },
      error: (error) => print("first", { event: "error", errors: plainErrors(error) }),
      complete: () => print("first", { event: "complete" }),
    },
  );
  const disposeSecond = client.subscribe(
    { query, variables },
    {
      next: (result) => {
        print("second", { event: "next", data: result.data });
        sink.count();
      },
      error: (error) => print("second", { event: "error", errors: plainErrors(error) }),
      complete: () => print("second", { event: "complete" }),
    },
  );
  return () => {
    disposeFirst();
    disposeSecond();
    client.dispose();
  };
});
