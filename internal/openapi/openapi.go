package openapi

import (
	"crypto/sha256"
	_ "embed" // the document and the viewer
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// Paths of the routes this package serves.
const (
	SpecPath   = "/openapi.json"
	DocsPath   = "/docs"
	ViewerPath = "/docs/redoc.standalone.js"
)

//go:embed openapi.json
var spec []byte

//go:embed viewer/redoc.standalone.js
var viewerScript []byte

// docsPage renders the document with the viewer; both load from this
// server, by paths relative to /docs so a path prefix in front of the server
// keeps working.
const docsPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tenantd API reference</title>
<style>body { margin: 0; }</style>
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="docs/redoc.standalone.js"></script>
</body>
</html>
`

// docsPolicy lets the page run only the viewer from this server. Redoc
// styles its components inline, draws icons from data: URLs and runs its
// search index in a worker made from a blob.
const docsPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Document returns a copy of the embedded OpenAPI document.
func Document() []byte { return append([]byte(nil), spec...) }

// Spec serves the OpenAPI document, with an ETag so clients can revalidate.
func Spec() gin.HandlerFunc {
	return static(spec, "application/json", "no-cache", nil)
}

// Docs serves the HTML page of the rendered reference.
func Docs() gin.HandlerFunc {
	return static([]byte(docsPage), "text/html; charset=utf-8", "no-cache", map[string]string{
		"Content-Security-Policy": docsPolicy,
		"Referrer-Policy":         "no-referrer",
	})
}

// Viewer serves the viewer script the Docs page loads.
func Viewer() gin.HandlerFunc {
	return static(viewerScript, "text/javascript; charset=utf-8", "public, max-age=86400", nil)
}

// static serves body with a strong ETag of its content, answering 304 to a
// matching If-None-Match.
func static(body []byte, contentType, cacheControl string, extra map[string]string) gin.HandlerFunc {
	sum := sha256.Sum256(body)
	tag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("ETag", tag)
		h.Set("Cache-Control", cacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		for k, v := range extra {
			h.Set(k, v)
		}
		if matches(c.GetHeader("If-None-Match"), tag) {
			c.Status(http.StatusNotModified)
			return
		}
		c.Data(http.StatusOK, contentType, body)
	}
}

// matches reports whether an If-None-Match header lists tag (weak
// comparison, as RFC 9110 prescribes for If-None-Match).
func matches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}
