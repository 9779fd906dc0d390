package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
)

// MaxBodyBytes is the largest request body the API accepts.
const MaxBodyBytes = 1 << 20

// BindJSON decodes the request body into dst strictly: one JSON object,
// unknown fields rejected, wrong types named. It returns a fault error fit for
// the client on any problem.
func BindJSON(c *gin.Context, dst any) error {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fault.New(fault.PayloadTooLarge, fmt.Sprintf("the request body exceeds %d bytes", tooBig.Limit))
		}
		return fault.Invalid(fault.Field("body", "could not read the request body"))
	}
	return DecodeStrict(body, dst)
}

// DecodeStrict decodes one JSON value from body into dst with unknown fields
// rejected, and turns decoder errors into field errors. Every string of the
// body, at any depth and object keys included, must follow the text rule
// (see ValidText): a 422 names the first field that does not.
func DecodeStrict(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fault.Invalid(fault.Field("body", "a JSON object is required"))
	}
	if err := checkJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return fault.Invalid(fault.Field("body", "unexpected data after the JSON object"))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fault.Invalid(fault.Field("body", "unexpected data after the JSON object"))
	}
	return nil
}

func decodeError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fault.Invalid(fault.Field("body", fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return fault.Invalid(fault.Field(field, fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fault.Invalid(fault.Field("body", "truncated JSON"))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fault.Invalid(fault.Field(name, "unknown field"))
	default:
		return fault.Invalid(fault.Field("body", "invalid JSON: "+err.Error()))
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	default:
		return goKind
	}
}
