// subscriptions-transport-ws: the legacy "graphql-ws" protocol (Apollo's old client).
import { SubscriptionClient } from "subscriptions-transport-ws";
import WebSocket from "ws";

import { connectionParams, plainErrors, run } from "./protocol.mjs";

run(({ url, query, variables, token }, sink) => {
  const client = new SubscriptionClient(
    url,
    {
      reconnect: false,
      lazy: false,
      connectionParams: connectionParams(token),
      // the server refused connection_init (e.g. a forged token): "connection_error"
      connectionCallback: (error) => {
        if (error) sink.error(plainErrors(error));
      },
    },
    WebSocket,
  );
  // the library hides close codes; the underlying socket has them
  client.client.addEventListener("close", (event) => sink.closed(event.code, event.reason));
  const subscription = client.request({ query, variables }).subscribe({
    next: (result) =>
      result.errors && !result.data
        ? sink.error(plainErrors(result.errors))
        : sink.next(result.data, result.errors),
    error: (error) => sink.error(plainErrors(error)),
    complete: () => sink.complete(),
  });
  return () => {
    subscription.unsubscribe();
    client.close();
  };
});
