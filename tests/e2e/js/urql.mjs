// urql's core client with subscriptionExchange over a graphql-ws client.
import { Client, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { connectionParams, plainErrors, run } from "./protocol.mjs";

run(({ url, query, variables, token }, sink) => {
  const wsClient = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: connectionParams(token),
    retryAttempts: 0,
    on: { closed: (event) => sink.closed(event.code, event.reason) },
  });
  const client = new Client({
    url: url.replace(/^ws/, "http"),
    exchanges: [
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(observer) {
              const unsubscribe = wsClient.subscribe(input, observer);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  const { unsubscribe } = client.subscription(query, variables).subscribe((result) => {
    // urql marks live subscription results hasNext: true; when the server completes
    // the operation it repeats the last result with hasNext: false, meaning "done"
    if (result.hasNext === false) {
      sink.complete();
    } else if (result.error) {
      sink.error(plainErrors(result.error));
    } else {
      sink.next(result.data);
    }
  });
  return () => {
    unsubscribe();
    wsClient.dispose();
  };
});
