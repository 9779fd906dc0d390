// Package netguard keeps outbound calls to URLs that tenants choose (OIDC
// discovery and key sets today, webhooks next) away from the private
// network: one table of the IANA special-purpose address ranges (ranges.go),
// checked when a URL is registered and again at dial time on the address
// actually connected to, so DNS names that resolve to internal addresses,
// DNS rebinding and redirects cannot pass either.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Options configure a Guard.
type Options struct {
	// AllowPrivate lets every address through: for development and tests,
	// whose servers listen on loopback (OIDC_ALLOW_INSECURE_ISSUERS). Never
	// in production.
	AllowPrivate bool
}

// Guard decides which addresses outbound calls may reach. It is safe for
// concurrent use.
type Guard struct {
	allowPrivate bool
}

// New returns a Guard.
func New(o Options) *Guard { return &Guard{allowPrivate: o.AllowPrivate} }

// BlockedError says which range refused an address.
type BlockedError struct {
	Addr  netip.Addr
	Range Range
	// Via, when set, is the IPv6 form (IPv4-mapped or NAT64) through which
	// Addr, an IPv4 address, was reached.
	Via *Range
}

func (e *BlockedError) Error() string {
	via := ""
	if e.Via != nil {
		via = " via " + e.Via.Name
	}
	return fmt.Sprintf("address %s%s is in %s (%s, %s)", e.Addr, via, e.Range.Prefix, e.Range.Name, e.Range.Source)
}

// Lookup returns the refused range that contains addr, following
// IPv4-mapped and NAT64 forms to the IPv4 address they carry. ok is false
// for an address the guard lets through.
func Lookup(addr netip.Addr) (r Range, via *Range, ok bool) {
	addr = addr.WithZone("")
	if addr.Is6() {
		for i := range translated {
			if translated[i].Prefix.Contains(addr) {
				b := addr.As16()
				v4 := netip.AddrFrom4([4]byte(b[12:16]))
				if r, _, ok := Lookup(v4); ok {
					return r, &translated[i], true
				}
				return Range{}, nil, false
			}
		}
	}
	for _, r := range blocked {
		if r.Prefix.Contains(addr) {
			return r, nil, true
		}
	}
	return Range{}, nil, false
}

// Check returns a *BlockedError when addr is in a refused range (unless
// the guard allows private addresses), and nil otherwise.
func (g *Guard) Check(addr netip.Addr) error {
	if g.allowPrivate {
		return nil
	}
	if !addr.IsValid() {
		return errors.New("not an IP address")
	}
	if r, via, ok := Lookup(addr); ok {
		ip := addr.WithZone("")
		if via != nil {
			b := ip.As16()
			ip = netip.AddrFrom4([4]byte(b[12:16]))
		}
		return &BlockedError{Addr: ip, Range: r, Via: via}
	}
	return nil
}

// CheckHost validates the host of a URL when it is registered: an IP
// literal must pass Check; localhost names are refused; numeric shorthand
// that resolvers read as an IPv4 address (127.1, 2130706433, 0x7f.0.0.1)
// is refused, as only canonical addresses can be checked here. Other names
// are checked on every connection, at dial time.
func (g *Guard) CheckHost(host string) error {
	if host == "" {
		return errors.New("no host")
	}
	if g.allowPrivate {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return errors.New("localhost names reach this host")
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return g.Check(addr)
	}
	labels := strings.Split(name, ".")
	if last := labels[len(labels)-1]; numeric(last) {
		return errors.New("numeric host names are read as IPv4 addresses; write a DNS name or a dotted-decimal address")
	}
	return nil
}

// numeric reports whether a label is digits, or 0x and hex digits: never a
// top-level domain, always an IPv4 shorthand to a resolver.
func numeric(label string) bool {
	if hex, ok := strings.CutPrefix(label, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return label != "" && strings.Trim(label, "0123456789") == ""
}

// Control is a net.Dialer Control function: it runs after name resolution,
// on the address about to be connected to, and refuses it unless Check
// passes. Every connection goes through it, so a name that resolves (or
// re-resolves, DNS rebinding) to an internal address is refused too.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	if g.allowPrivate {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("netguard: %s %q: %w", network, address, err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("netguard: %s %q: not an IP address", network, address)
	}
	if err := g.Check(addr); err != nil {
		return fmt.Errorf("netguard: refusing to connect: %w", err)
	}
	return nil
}

// ErrRedirect is returned for a response that redirects: a redirect could
// point anywhere, so the guard's clients follow none.
var ErrRedirect = errors.New("netguard: redirects are not followed")

// Client returns an HTTP client whose every connection passes Control,
// which uses no proxy (the guard would check the proxy's address, not the
// destination's), follows no redirects, and bounds connecting, the TLS
// handshake, waiting for response headers and the whole call by timeout.
func (g *Guard) Client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, Control: g.Control}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return ErrRedirect },
	}
}
