# TOKEN=<a token> sh query.sh: the messages its user may read, over HTTP
curl -s "${GRAPHQL_URL:-http://127.0.0.1:8000/graphql/}" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{"query": "{ messages { text room { name } } }"}'
