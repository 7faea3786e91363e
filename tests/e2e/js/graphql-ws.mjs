// graphql-ws (the graphql-transport-ws protocol), the reference client.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { connectionParams, plainErrors, run } from "./protocol.mjs";

run(({ url, query, variables, token }, sink) => {
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: connectionParams(token),
    retryAttempts: 0,
    on: { closed: (event) => sink.closed(event.code, event.reason) },
  });
  const dispose = client.subscribe(
    { query, variables },
    {
      // GraphQL errors without data fail the operation, as the other clients report it
      next: (result) =>
        result.errors && !result.data
          ? sink.error(plainErrors(result.errors))
          : sink.next(result.data, result.errors),
      error: (error) => sink.error(plainErrors(error)),
      complete: () => sink.complete(),
    },
  );
  return () => {
    dispose();
    client.dispose();
  };
});
