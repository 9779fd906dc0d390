package devenv

import "net/url"

// DatabaseURL returns the PostgreSQL URL raw pointed at database name and
// then changed by each edit in turn (another user: AsUser; another host).
// A raw URL that does not parse is returned as it is, for the connection
// to report.
func DatabaseURL(raw, name string, edits ...func(*url.URL)) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + name
	for _, edit := range edits {
		edit(u)
	}
	return u.String()
}

// AsUser is an edit for DatabaseURL: connect as user with password.
func AsUser(user, password string) func(*url.URL) {
	return func(u *url.URL) { u.User = url.UserPassword(user, password) }
}
