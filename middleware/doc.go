// Package middleware is tenantd's gin middleware chain: request id, panic
// recovery, access logging, body limit, authentication, tenant matching and
// status, and route authorization. Each piece depends only on the small
// interface it consumes, declared here.
package middleware
