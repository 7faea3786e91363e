// A local copy of the demo's books, kept exact across reconnects, with graphql-ws.
//
//   npm install graphql-ws ws
//   node resume-graphql-ws.mjs http://127.0.0.1:8000/graphql/
//
// follow() fills the copy (a Map: id -> book) from `query { booksCursor books }`,
// subscribes with `after: booksCursor` and folds every event, remembering the cursor of
// the last one. When the subscription is cut (socket closed, server gone), it subscribes
// again with `after: <that cursor>`: what was missed comes first, then live events. When
// the server answers RESYNC (it cannot tell what was missed), it refetches and starts
// over from the new cursor.
import { fileURLToPath } from "node:url";

import { createClient } from "graphql-ws";
import WebSocket from "ws"; // Node 20; browsers and Node 22+ have a global WebSocket

const BOOKS = "query { booksCursor books { id title } }"; // the cursor first
const BOOK_CHANGED = `subscription ($after: String) {
  bookChanged(after: $after) { op id cursor node { id title } }
}`;

const isResync = (errors) =>
  Array.isArray(errors) && errors.some((e) => e.extensions?.code === "RESYNC");

/**
 * Follow the books: `copy` equals what the `books` query returns whenever writes pause.
 *
 * - httpUrl, wsUrl: the endpoints, or functions returning them (asked at every connect);
 * - saved: `{ copy, cursor }` kept from an earlier session, to resume from;
 * - on: callbacks `event(event)`, `refetch(copy)`, `resync(errors)`, `interrupted(why)`;
 * - retryDelay: milliseconds before subscribing again after a cut.
 */
export async function follow({ httpUrl, wsUrl, saved, on = {}, retryDelay = 1000 }) {
  const copy = new Map(saved?.copy ?? []);
  let cursor = saved?.cursor ?? null; // the cursor of the last event folded
  let running = true; // false while disconnected on purpose
  let unsubscribe = null;
  let timer = null;

  // graphql-ws must not retry by itself: it would subscribe again with the variables it
  // was first given, a stale cursor. We subscribe again below, with the last one.
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0 });

  async function refetch() {
    const response = await fetch(typeof httpUrl === "function" ? httpUrl() : httpUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: BOOKS }),
    });
    const { data, errors } = await response.json();
    if (errors) throw new Error(errors[0].message);
    copy.clear();
    for (const book of data.books) copy.set(book.id, book);
    cursor = data.booksCursor;
    on.refetch?.(copy);
  }

  function fold(event) {
    if (event.op === "DELETED") copy.delete(event.id);
    else copy.set(event.id, event.node);
    cursor = event.cursor;
    on.event?.(event);
  }

  function subscribe() {
    let over = false;
    const ended = (errors) => {
      // the server or the network ended it: resume, or refetch on RESYNC
      if (over) return;
      over = true;
      unsubscribe = null;
      const resync = isResync(errors);
      (resync ? on.resync : on.interrupted)?.(errors);
      again(resync);
    };
    const dispose = client.subscribe(
      { query: BOOK_CHANGED, variables: { after: cursor } },
      {
        next: ({ data, errors }) => (errors ? ended(errors) : fold(data.bookChanged)),
        error: ended, // GraphQL errors (an array), or the socket's close event
        complete: () => ended(null),
      },
    );
    unsubscribe = () => {
      over = true;
      dispose();
    };
  }

  function again(resync) {
    if (!running) return;
    timer = setTimeout(async () => {
      try {
        if (resync) await refetch();
        if (running && !unsubscribe) subscribe();
      } catch (error) {
        on.interrupted?.(error); // the server is unreachable: try again later
        again(resync);
      }
    }, resync ? 0 : retryDelay);
  }

  function disconnect() {
    running = false;
    clearTimeout(timer);
    unsubscribe?.();
    unsubscribe = null;
  }

  if (cursor === null) await refetch();
  subscribe();
  return {
    copy,
    get cursor() {
      return cursor;
    },
    /** Go away (the copy and the cursor stay); `reconnect()` comes back. */
    disconnect,
    /** Subscribe again from the last cursor, as after a cut. */
    reconnect() {
      disconnect();
      running = true;
      subscribe();
    },
    stop() {
      disconnect();
      client.dispose();
    },
  };
}

// node resume-graphql-ws.mjs [HTTP_URL]: print every change as it is folded
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const httpUrl = process.argv[2] ?? "http://127.0.0.1:8000/graphql/";
  const books = await follow({
    httpUrl,
    wsUrl: httpUrl.replace(/^http/, "ws"),
    on: {
      event: ({ op, node }) => console.log(op, node.title),
      resync: () => console.log("RESYNC: refetching"),
      interrupted: () => console.log("cut off: resuming"),
    },
  });
  console.log(`following ${books.copy.size} books from cursor ${books.cursor}`);
}
