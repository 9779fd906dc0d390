package httpx

import (
	"strconv"
	"strings"
)

// VersionETag is the strong entity tag of a resource version: "<version>".
func VersionETag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}

// NoneMatch reports whether an If-None-Match header matches tag (then a GET
// answers 304), by the weak comparison RFC 9110 prescribes for it: "*", or
// any listed tag equal to tag once a W/ prefix is dropped.
func NoneMatch(header, tag string) bool {
	if strings.TrimSpace(header) == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == tag {
			return true
		}
	}
	return false
}
