// Entry point of the bundled GraphiQL page shipped with gqlsync.
//
// Built by build.sh into ../static/graphiql.js + ../static/graphiql.css.
// Exposes `window.GqlsyncGraphiQL.render(element, options)`; index.html calls it.
//
// Queries and mutations go over HTTP POST (same origin, session cookie
// included); subscriptions go over WebSocket using the graphql-transport-ws
// protocol (graphql-ws client). Headers typed in GraphiQL's headers editor
// are forwarded as HTTP headers, and as the connection_init payload (with
// lower-cased keys) for WebSocket connections.
import React from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createClient } from "graphql-ws";
import { parse, getOperationAST } from "graphql";
import "graphiql/style.css";

function readCookie(name) {
  const prefix = name + "=";
  for (const part of (document.cookie || "").split(";")) {
    const item = part.trim();
    if (item.startsWith(prefix)) {
      return decodeURIComponent(item.slice(prefix.length));
    }
  }
  return null;
}

// GraphiQL hands us the parsed JSON of the headers editor (or nothing).
function normalizeHeaders(headers) {
  const out = {};
  if (headers && typeof headers === "object" && !Array.isArray(headers)) {
    for (const [key, value] of Object.entries(headers)) {
      if (value === undefined || value === null) continue;
      out[key] = typeof value === "string" ? value : String(value);
    }
  }
  return out;
}

function lowerCaseKeys(headers) {
  const out = {};
  for (const [key, value] of Object.entries(headers)) {
    out[key.toLowerCase()] = value;
  }
  return out;
}

function isSubscription(graphQLParams) {
  try {
    const op = getOperationAST(
      parse(graphQLParams.query),
      graphQLParams.operationName || undefined,
    );
    return !!op && op.operation === "subscription";
  } catch (e) {
    // Unparseable: let the server report the syntax error over HTTP.
    return false;
  }
}

function errorMessage(err) {
  if (err instanceof Error) return err.message;
  if (Array.isArray(err)) {
    return err.map((e) => (e && e.message) || String(e)).join("\n");
  }
  if (err && typeof err === "object" && "code" in err) {
    // CloseEvent from the WebSocket.
    const reason = err.reason ? ": " + err.reason : "";
    return "WebSocket closed with code " + err.code + reason;
  }
  if (err && typeof err === "object" && err.type === "error") {
    return "WebSocket connection error";
  }
  return String(err);
}

export function createFetcher(endpoint) {
  const httpUrl = new URL(endpoint, window.location.href);
  const wsUrl = new URL(httpUrl.href);
  wsUrl.protocol = httpUrl.protocol === "https:" ? "wss:" : "ws:";

  let wsClient = null;
  let wsKey = null;

  function getWsClient(connectionParams) {
    const key = JSON.stringify(connectionParams);
    if (wsClient === null || wsKey !== key) {
      if (wsClient !== null) wsClient.dispose();
      wsKey = key;
      wsClient = createClient({
        url: wsUrl.href,
        connectionParams,
        lazy: true,
        retryAttempts: 0,
      });
    }
    return wsClient;
  }

  async function* subscribe(graphQLParams, headers) {
    const client = getWsClient(lowerCaseKeys(headers));
    const iterator = client.iterate({
      query: graphQLParams.query,
      variables: graphQLParams.variables || undefined,
      operationName: graphQLParams.operationName || undefined,
      extensions: graphQLParams.extensions || undefined,
    });
    try {
      for await (const result of iterator) {
        yield result;
      }
    } catch (err) {
      yield { errors: [{ message: errorMessage(err) }] };
    } finally {
      if (iterator.return) await iterator.return();
    }
  }

  return function fetcher(graphQLParams, opts) {
    const headers = normalizeHeaders(opts && opts.headers);
    if (isSubscription(graphQLParams)) {
      return subscribe(graphQLParams, headers);
    }
    const requestHeaders = {
      "Content-Type": "application/json",
      Accept: "application/json",
    };
    const csrfToken = readCookie("csrftoken");
    if (csrfToken) requestHeaders["X-CSRFToken"] = csrfToken;
    Object.assign(requestHeaders, headers);
    return fetch(httpUrl.href, {
      method: "POST",
      credentials: "same-origin",
      headers: requestHeaders,
      body: JSON.stringify(graphQLParams),
    }).then(async (response) => {
      const text = await response.text();
      try {
        return JSON.parse(text);
      } catch (e) {
        return {
          errors: [
            {
              message:
                "Non-JSON response (HTTP " + response.status + "): " +
                text.slice(0, 2000),
            },
          ],
        };
      }
    });
  };
}

export function render(element, options = {}) {
  const endpoint = options.endpoint || window.location.pathname;
  const fetcher = createFetcher(endpoint);
  const props = { fetcher };
  if (options.defaultQuery !== undefined) props.defaultQuery = options.defaultQuery;
  if (options.defaultHeaders !== undefined) props.defaultHeaders = options.defaultHeaders;
  const root = createRoot(element);
  root.render(React.createElement(GraphiQL, props));
  return root;
}

window.GqlsyncGraphiQL = { render, createFetcher };
