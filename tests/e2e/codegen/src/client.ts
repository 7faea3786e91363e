// The demo's chat over graphql-ws, with typed documents: graphql() returns a
// TypedDocumentNode whose result and variables types codegen derived from the schema.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print } from "graphql";
import { type Client, createClient } from "graphql-ws";
import WebSocket from "ws"; // Node 20; browsers and Node 22+ have a global WebSocket

import { graphql } from "./gql/index.js";
import type { RoomMessagesSubscription } from "./gql/graphql.js";

export const LoginDocument = graphql(`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) { token }
  }
`);

export const RoomsDocument = graphql(`
  query Rooms {
    rooms { id name }
  }
`);

export const SendMessageDocument = graphql(`
  mutation SendMessage($room: String!, $text: String!) {
    sendMessage(room: $room, text: $text) { id text author { username } }
  }
`);

export const RoomMessagesDocument = graphql(`
  subscription RoomMessages($room: String!) {
    messageChanged(room: $room) { op id cursor node { id text author { username } } }
  }
`);

export type MessageEvent = RoomMessagesSubscription["messageChanged"];

/** Every result of `document`: one for a query or a mutation, a stream for a subscription. */
export async function* execute<Result, Variables extends Record<string, unknown>>(
  client: Client,
  document: TypedDocumentNode<Result, Variables>,
  variables: NoInfer<Variables>,
): AsyncGenerator<Result> {
  for await (const result of client.iterate<Result>({ query: print(document), variables })) {
    if (result.errors?.length) {
      throw new Error(result.errors.map((error) => error.message).join("; "));
    }
    if (result.data) yield result.data;
  }
}

/** The result of a query or a mutation. */
export async function request<Result, Variables extends Record<string, unknown>>(
  client: Client,
  document: TypedDocumentNode<Result, Variables>,
  variables: NoInfer<Variables>,
): Promise<Result> {
  for await (const data of execute(client, document, variables)) return data;
  throw new Error("the operation completed without a result");
}

/** A client signed in as `username` (url: ws://127.0.0.1:8000/graphql/). */
export async function signIn(url: string, username: string, password: string): Promise<Client> {
  const anonymous = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0 });
  try {
    const { login } = await request(anonymous, LoginDocument, { username, password });
    return createClient({
      url,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${login.token}` },
    });
  } finally {
    await anonymous.dispose();
  }
}

/** The names of the rooms the user is a member of. */
export async function roomNames(client: Client): Promise<string[]> {
  const { rooms } = await request(client, RoomsDocument, {});
  return rooms.map((room) => room.name);
}

/** Send `text` to `room`: the new message's id. */
export async function send(client: Client, room: string, text: string): Promise<string> {
  const { sendMessage } = await request(client, SendMessageDocument, { room, text });
  return sendMessage.id;
}

/** The changes to `room`'s messages, as they happen. */
export async function* roomMessages(client: Client, room: string): AsyncGenerator<MessageEvent> {
  for await (const { messageChanged } of execute(client, RoomMessagesDocument, { room })) {
    yield messageChanged;
  }
}

/** One line for an event: the payload is typed down to the author's name. */
export function describe(event: MessageEvent): string {
  // @ts-expect-error: a Message has no `body` (the types are real, not `any`)
  event.node.body;
  return `${event.op} #${event.id} ${event.node.author.username}: ${event.node.text}`;
}
