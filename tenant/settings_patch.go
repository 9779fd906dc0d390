package tenant

import (
	"bytes"
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/tenantd/tenantd/internal/fault"
)

// SettingsPatch is a JSON Merge Patch (RFC 7396) of a tenant's Settings,
// as PATCH /v1/tenant takes it: keys left out are kept, a key set to null
// is removed, objects (oidc) are merged key by key, and any other value
// (a string, an array such as cors_origins) replaces what was there.
// A null patch removes every setting.
type SettingsPatch json.RawMessage

// Apply returns cur with the patch applied. The result is not validated:
// see ValidateSettings.
func (p SettingsPatch) Apply(cur Settings) (Settings, error) {
	doc, err := json.Marshal(cur)
	if err != nil {
		return Settings{}, fmt.Errorf("encode settings: %w", err)
	}
	merged, err := jsonpatch.MergePatch(doc, p)
	if err != nil {
		return Settings{}, fault.Invalid(fault.Field("settings", "must be a JSON object (a JSON Merge Patch of the settings)"))
	}
	var next Settings
	if bytes.Equal(bytes.TrimSpace(merged), []byte("null")) {
		return next, nil
	}
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&next); err != nil {
		// The handler decodes the patch into Settings before it gets here,
		// so unknown keys and wrong types were refused already.
		return Settings{}, fault.Invalid(fault.Field("settings", "does not merge into valid settings: "+err.Error()))
	}
	return next, nil
}
