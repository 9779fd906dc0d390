package testenv

import (
	"slices"

	"github.com/tenantd/tenantd/internal/fault"
)

// FaultFields returns the code of err and the names of the fields it
// blames, sorted, for table-driven checks of validation errors.
func FaultFields(err error) (fault.Code, []string) {
	fe, ok := fault.As(err)
	if !ok {
		return fault.CodeOf(err), nil
	}
	var names []string
	for _, f := range fe.Fields {
		names = append(names, f.Field)
	}
	slices.Sort(names)
	return fe.Code, names
}
