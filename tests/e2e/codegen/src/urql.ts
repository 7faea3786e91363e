// urql: a typed document goes where a gql`` document would.
import { Client, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { RoomMessagesDocument } from "./client.js";

export function followRoom(url: string, token: string, room: string) {
  const ws = createClient({
    url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` },
  });
  const client = new Client({
    url: url.replace(/^ws/, "http"),
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (operation) => ({
          subscribe: (sink) => ({
            unsubscribe: ws.subscribe({ ...operation, query: operation.query ?? "" }, sink),
          }),
        }),
      }),
    ],
  });
  return client
    .subscription(RoomMessagesDocument, { room })
    .subscribe(({ data }) => console.log(data?.messageChanged.op, data?.messageChanged.node.text));
}
