// Apollo Client (core, no React) with GraphQLWsLink over a graphql-ws client.
import { ApolloClient, InMemoryCache, gql } from "@apollo/client/core";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
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
  const client = new ApolloClient({
    link: new GraphQLWsLink(wsClient),
    cache: new InMemoryCache(),
  });
  const subscription = client
    .subscribe({ query: gql(query), variables, fetchPolicy: "no-cache" })
    .subscribe({
      // Apollo Client 4 reports GraphQL errors in the result, as `error`
      next: (result) =>
        result.error
          ? sink.error(plainErrors(result.error))
          : sink.next(result.data),
      error: (error) => sink.error(plainErrors(error)),
      complete: () => sink.complete(),
    });
  return () => {
    subscription.unsubscribe();
    wsClient.dispose();
  };
});
