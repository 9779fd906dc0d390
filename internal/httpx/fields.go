package httpx

import (
	"slices"

	"github.com/tenantd/tenantd/internal/fault"
)

// Required reads a required field of a request body, whose pointer tells
// a missing field from a zero one: *given into dst, or "is required" named
// in f when the client left the field out (given is nil).
func Required[T any](f *fault.Fields, field string, given, dst *T) {
	if given == nil {
		f.Add(field, "is required")
		return
	}
	*dst = *given
}

// AddInvalid adds to f each field err names (a fault error's fields, such
// as a Validate method's) that f does not name yet: a body's refusal names
// what the values given break beside what is missing, once a field.
func AddInvalid(f *fault.Fields, err error) {
	fe, ok := fault.As(err)
	if !ok {
		return
	}
	named := len(*f)
	for _, v := range fe.Fields {
		if !slices.ContainsFunc((*f)[:named], func(m fault.FieldError) bool { return m.Field == v.Field }) {
			*f = append(*f, v)
		}
	}
}
