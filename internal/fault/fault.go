// Package fault defines the small set of error codes that every module uses
// to say what went wrong, independent of HTTP. internal/httpx maps each code
// to a status in one table.
package fault

import (
	"errors"
	"fmt"
	"time"
)

// Code is a stable, machine-readable error code from the API contract.
type Code string

// The codes of the API contract.
const (
	Validation           Code = "validation_failed"
	Unauthenticated      Code = "unauthenticated"
	Forbidden            Code = "forbidden"
	TenantMismatch       Code = "tenant_mismatch"
	TenantSuspended      Code = "tenant_suspended"
	NotFound             Code = "not_found"
	Conflict             Code = "conflict"
	InsufficientStock    Code = "insufficient_stock"
	AmountMismatch       Code = "amount_mismatch"
	OrderNotPayable      Code = "order_not_payable"
	IdempotencyKeyReused Code = "idempotency_key_reused"
	RateLimited          Code = "rate_limited"
	QuotaExceeded        Code = "quota_exceeded"
	GatewayUnavailable   Code = "payment_gateway_unavailable"
	PreconditionFailed   Code = "precondition_failed"
	PayloadTooLarge      Code = "payload_too_large"
	// LastAdmin refuses to revoke, remove or demote a tenant's last
	// credential that can act as its admin.
	LastAdmin Code = "last_admin"
	// IdentityProviderUnavailable means a tenant's OIDC provider could not
	// be reached for discovery or keys.
	IdentityProviderUnavailable Code = "identity_provider_unavailable"
	// Unavailable means the service could not answer in time (a lock or
	// statement timeout, a deadlock that outlasted its retries, no
	// connection free): the same request may succeed when retried.
	Unavailable Code = "service_unavailable"
	Internal    Code = "internal"
)

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with a contract code, a message safe to show a client,
// and optionally the fields that were wrong.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
	// RetryAfter, when positive, is how long the client should wait before
	// trying again (a Retry-After header over HTTP).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s (%s: %s)", e.Code, e.Message, e.Fields[0].Field, e.Fields[0].Message)
}

// New returns an error with the given code and client-safe message.
func New(code Code, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Later returns an error with the given code and client-safe message that
// asks the client to try again after wait.
func Later(code Code, message string, wait time.Duration) *Error {
	return &Error{Code: code, Message: message, RetryAfter: wait}
}

// Invalid returns a validation error for the given fields.
func Invalid(fields ...FieldError) *Error {
	return &Error{Code: Validation, Message: "the request has invalid fields", Fields: fields}
}

// Field is shorthand for a FieldError.
func Field(name, message string) FieldError {
	return FieldError{Field: name, Message: message}
}

// As returns the *Error inside err, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return nil, false
}

// CodeOf returns the code of err, or Internal when err carries none.
func CodeOf(err error) Code {
	if fe, ok := As(err); ok {
		return fe.Code
	}
	return Internal
}

// Fields collects field errors; Err returns nil when none were added.
type Fields []FieldError

// Add records a field error.
func (f *Fields) Add(field, message string) { *f = append(*f, FieldError{field, message}) }

// Err returns a validation error, or nil when no field is wrong.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return Invalid(f...)
}
