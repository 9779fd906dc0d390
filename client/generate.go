package client

// The client is generated from the document the server serves at
// /openapi.json. Regenerate with `make client` after changing
// internal/openapi/openapi.json; `make client-check` (run in CI) fails when
// the committed code is not what the document generates.

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -generate types,client -package client -o client.gen.go ../internal/openapi/openapi.json
