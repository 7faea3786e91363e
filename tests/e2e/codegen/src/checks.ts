// More proof that the generated types are real (compiled by `tsc --noEmit`, never run):
// each line after a @ts-expect-error must be an error, or tsc fails with
// "Unused '@ts-expect-error' directive".
import type { ApolloClient } from "@apollo/client";
import type { Client as UrqlClient } from "@urql/core";
import type { Client } from "graphql-ws";

import { execute, request, RoomMessagesDocument, SendMessageDocument } from "./client.js";

export async function checks(client: Client): Promise<void> {
  // @ts-expect-error: SendMessage needs its text
  await request(client, SendMessageDocument, { room: "general" });
  // @ts-expect-error: a room is a String
  await request(client, SendMessageDocument, { room: 1, text: "hi" });
  // @ts-expect-error: RoomMessages has no variable `after` (the document declares none)
  execute(client, RoomMessagesDocument, { room: "general", after: "0" });
  for await (const { messageChanged } of execute(client, RoomMessagesDocument, { room: "a" })) {
    // @ts-expect-error: an op is CREATED, UPDATED or DELETED
    if (messageChanged.op === "RESYNC") return;
    // @ts-expect-error: the document does not select the message's room
    messageChanged.node.room;
  }
}

export function libraryChecks(apollo: ApolloClient, urql: UrqlClient): void {
  // @ts-expect-error: Apollo Client checks RoomMessages' variables too
  apollo.subscribe({ query: RoomMessagesDocument, variables: { rom: "general" } });
  // @ts-expect-error: and so does urql
  urql.subscription(RoomMessagesDocument, { rom: "general" });
}
