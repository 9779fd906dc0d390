// Package openapi serves the API's OpenAPI 3.1 document (GET /openapi.json)
// and a rendered reference (GET /docs) whose viewer script, Redoc, is
// embedded in the binary and served from GET /docs/redoc.standalone.js.
//
// The document, openapi.json beside this file, is written by hand and must
// describe exactly the routes the server registers, each with the
// permission it requires in x-permission; internal/app's OpenAPI tests hold
// it to that against the real router and validate real responses with it.
// Its component names are unique across sections, so that oapi-codegen
// generates the Go client in client/ from it unconfigured (make client;
// make client-check in CI proves the committed client is current), and it
// passes Spectral's spectral:oas rules with no error (make spectral).
// The package owns no state and needs nothing but gin.
package openapi
