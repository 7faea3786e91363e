// Apollo Client: a typed document goes where a gql`` document would.
import { ApolloClient, InMemoryCache } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { RoomMessagesDocument } from "./client.js";

export function followRoom(url: string, token: string, room: string) {
  const client = new ApolloClient({
    link: new GraphQLWsLink(createClient({
      url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` },
    })),
    cache: new InMemoryCache(),
  });
  return client
    .subscribe({ query: RoomMessagesDocument, variables: { room } })
    .subscribe(({ data }) => console.log(data?.messageChanged.op, data?.messageChanged.node.text));
}
