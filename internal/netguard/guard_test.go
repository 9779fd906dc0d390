package netguard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// cases are written from the IANA registries, not from the table: each
// range has its first and last address (and the well-known ones inside it)
// refused, and the addresses just outside it allowed, so a range missing
// from the table, or too narrow or too wide, fails the test.
var cases = []struct {
	addr    string
	refused bool
}{
	// 0.0.0.0/8 "This network"
	{"0.0.0.0", true}, {"0.0.0.1", true}, {"0.255.255.255", true}, {"1.0.0.0", false},
	// 10.0.0.0/8 Private-Use
	{"9.255.255.255", false}, {"10.0.0.0", true}, {"10.1.2.3", true}, {"10.255.255.255", true}, {"11.0.0.0", false},
	// 100.64.0.0/10 Shared Address Space
	{"100.63.255.255", false}, {"100.64.0.0", true}, {"100.100.100.200", true}, {"100.127.255.255", true}, {"100.128.0.0", false},
	// 127.0.0.0/8 Loopback
	{"126.255.255.255", false}, {"127.0.0.0", true}, {"127.0.0.1", true}, {"127.255.255.255", true}, {"128.0.0.0", false},
	// 169.254.0.0/16 Link Local
	{"169.253.255.255", false}, {"169.254.0.0", true}, {"169.254.169.254", true}, {"169.254.255.255", true}, {"169.255.0.0", false},
	// 172.16.0.0/12 Private-Use
	{"172.15.255.255", false}, {"172.16.0.0", true}, {"172.31.255.255", true}, {"172.32.0.0", false},
	// 192.0.0.0/24 IETF Protocol Assignments
	{"191.255.255.255", false}, {"192.0.0.0", true}, {"192.0.0.8", true}, {"192.0.0.9", true}, {"192.0.0.170", true}, {"192.0.0.255", true}, {"192.0.1.0", false},
	// 192.0.2.0/24 TEST-NET-1
	{"192.0.2.0", true}, {"192.0.2.255", true}, {"192.0.3.0", false},
	// 192.31.196.0/24 AS112-v4 and 192.52.193.0/24 AMT: globally reachable
	{"192.31.196.1", false}, {"192.52.193.1", false},
	// 192.88.99.0/24 6to4 relay anycast (deprecated)
	{"192.88.98.255", false}, {"192.88.99.0", true}, {"192.88.99.255", true}, {"192.88.100.0", false},
	// 192.168.0.0/16 Private-Use
	{"192.167.255.255", false}, {"192.168.0.0", true}, {"192.168.255.255", true}, {"192.169.0.0", false},
	// 192.175.48.0/24 AS112: globally reachable
	{"192.175.48.1", false},
	// 198.18.0.0/15 Benchmarking
	{"198.17.255.255", false}, {"198.18.0.0", true}, {"198.19.255.255", true}, {"198.20.0.0", false},
	// 198.51.100.0/24 TEST-NET-2
	{"198.51.99.255", false}, {"198.51.100.0", true}, {"198.51.100.255", true}, {"198.51.101.0", false},
	// 203.0.113.0/24 TEST-NET-3
	{"203.0.112.255", false}, {"203.0.113.0", true}, {"203.0.113.255", true}, {"203.0.114.0", false},
	// 224.0.0.0/4 Multicast, 240.0.0.0/4 Reserved, 255.255.255.255 Limited Broadcast
	{"223.255.255.255", false}, {"224.0.0.0", true}, {"239.255.255.255", true}, {"240.0.0.0", true}, {"255.255.255.254", true}, {"255.255.255.255", true},
	// Public IPv4.
	{"8.8.8.8", false}, {"1.1.1.1", false}, {"93.184.215.14", false},

	// ::/128, ::1/128 and the deprecated IPv4-compatible ::/96
	{"::", true}, {"::1", true}, {"::2", true}, {"::8.8.8.8", true}, {"::1:0:0", false},
	// ::ffff:0:0:0/96 IPv4-translated (SIIT)
	{"::ffff:0:808:808", true},
	// 64:ff9b:1::/48 local-use NAT64, whatever it carries
	{"64:ff9b:1::", true}, {"64:ff9b:1::8.8.8.8", true}, {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", true}, {"64:ff9b:2::", false},
	// 100::/64 Discard-Only, 100:0:0:1::/64 Dummy
	{"100::", true}, {"100::ffff:ffff:ffff:ffff", true}, {"100:0:0:1::1", true}, {"100:0:0:2::", false},
	// 2001::/23 IETF Protocol Assignments (Teredo, benchmarking, ORCHID, anycast)
	{"2001::", true}, {"2001:0:4136:e378::1", true}, {"2001:2::1", true}, {"2001:1ff:ffff::1", true}, {"2001:200::1", false},
	// 2001:db8::/32 and 3fff::/20 Documentation
	{"2001:db8::1", true}, {"2001:db9::1", false}, {"3fff::1", true}, {"3fff:fff::1", true}, {"3fff:1000::1", false},
	// 2002::/16 6to4
	{"2002:a00:1::1", true}, {"2002:808:808::1", true}, {"2003::1", false},
	// 2620:4f:8000::/48 AS112: globally reachable
	{"2620:4f:8000::1", false},
	// 5f00::/16 SRv6 SIDs
	{"5f00::1", true}, {"5f01::1", false},
	// fc00::/7 Unique-Local, fe80::/10 Link-Local, fec0::/10 Site-Local, ff00::/8 Multicast
	{"fbff:ffff::1", false}, {"fc00::1", true}, {"fd12:3456::1", true}, {"fe80::1", true}, {"febf::1", true},
	{"fec0::1", true}, {"feff::1", true}, {"ff02::1", true}, {"ff0e::1", true},
	// Link-local with a zone.
	{"fe80::1%eth0", true},
	// Public IPv6.
	{"2606:4700:4700::1111", false}, {"2a00:1450:4001::1", false},
}

// TestLookup checks every address of cases, as given, IPv4-mapped
// (::ffff:a.b.c.d) and through the well-known NAT64 prefix
// (64:ff9b::a.b.c.d): the mapped and NAT64 forms of an IPv4 address are
// refused exactly when the address is.
func TestLookup(t *testing.T) {
	g := New(Options{})
	check := func(t *testing.T, s string, want bool) {
		t.Helper()
		addr := netip.MustParseAddr(s)
		err := g.Check(addr)
		if got := err != nil; got != want {
			t.Fatalf("Check(%s): got refused=%v (%v), want refused=%v", s, got, err, want)
		}
		if want {
			var be *BlockedError
			if !errors.As(err, &be) || be.Range.Name == "" || be.Range.Source == "" {
				t.Fatalf("Check(%s): got %v, want a *BlockedError naming the range", s, err)
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			check(t, tc.addr, tc.refused)
			a := netip.MustParseAddr(tc.addr)
			if !a.Is4() {
				return
			}
			b := a.As4()
			mapped := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
			check(t, mapped.String(), tc.refused)
			nat64 := netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
			check(t, nat64.String(), tc.refused)
			local64 := netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 5: 0x01, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
			check(t, local64.String(), true)
		})
	}
}

// TestEveryRangeIsTested fails when the table gains a range that cases do
// not exercise.
func TestEveryRangeIsTested(t *testing.T) {
	refused, embedding := Ranges()
	for _, r := range append(refused, embedding...) {
		found := false
		for _, tc := range cases {
			if r.Prefix.Contains(netip.MustParseAddr(tc.addr).WithZone("")) {
				found = true
				break
			}
		}
		if !found && !r.Prefix.Addr().Is4In6() && r.Prefix.Addr() != netip.MustParseAddr("64:ff9b::") {
			t.Errorf("range %s (%s) has no test case", r.Prefix, r.Name)
		}
	}
}

func TestBlockedErrorNamesTheCarriedAddress(t *testing.T) {
	err := New(Options{}).Check(netip.MustParseAddr("64:ff9b::a9fe:a9fe"))
	var be *BlockedError
	if !errors.As(err, &be) || be.Addr != netip.MustParseAddr("169.254.169.254") || be.Via == nil {
		t.Fatalf("got %v, want 169.254.169.254 via NAT64", err)
	}
	if !strings.Contains(err.Error(), "169.254.169.254") || !strings.Contains(err.Error(), "NAT64") {
		t.Fatalf("message %q does not name the address and the form", err)
	}
}

func TestAllowPrivate(t *testing.T) {
	g := New(Options{AllowPrivate: true})
	for _, s := range []string{"127.0.0.1", "10.0.0.1", "::1", "::ffff:127.0.0.1"} {
		if err := g.Check(netip.MustParseAddr(s)); err != nil {
			t.Fatalf("AllowPrivate: Check(%s) = %v, want nil", s, err)
		}
	}
	if err := g.CheckHost("localhost"); err != nil {
		t.Fatalf("AllowPrivate: CheckHost(localhost) = %v, want nil", err)
	}
}

func TestCheckHost(t *testing.T) {
	g := New(Options{})
	for _, tc := range []struct {
		host    string
		refused bool
	}{
		{"login.example.com", false},
		{"idp.example.com.", false},
		{"8.8.8.8", false},
		{"2606:4700:4700::1111", false},
		{"", true},
		{"localhost", true},
		{"LOCALHOST.", true},
		{"api.localhost", true},
		{"127.0.0.1", true},
		{"10.0.0.8", true},
		{"100.100.100.200", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"64:ff9b::10.0.0.1", true},
		{"64:ff9b::a9fe:a9fe", true},
		{"fe80::1%eth0", true},
		{"127.1", true},
		{"2130706433", true},
		{"0x7f000001", true},
		{"0x7f.0.0.1", true},
		{"127.0.0.1.", true},
		{"0177.0.0.1", true},
	} {
		t.Run(tc.host, func(t *testing.T) {
			err := g.CheckHost(tc.host)
			if got := err != nil; got != tc.refused {
				t.Fatalf("CheckHost(%q): got refused=%v (%v), want refused=%v", tc.host, got, err, tc.refused)
			}
		})
	}
}

// TestClientChecksAtDialTime: the client refuses to connect to a loopback
// server, whether named by address or by a name resolving to it (what DNS
// rebinding relies on), unless private addresses are allowed; it follows
// no redirect even then.
func TestClientChecksAtDialTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/ok", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]

	guarded := New(Options{}).Client(2 * time.Second)
	for _, u := range []string{srv.URL + "/ok", "http://localhost" + port + "/ok"} {
		resp, err := guarded.Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s: got %d, want the connection refused", u, resp.StatusCode)
		}
		var be *BlockedError
		if !errors.As(err, &be) {
			t.Fatalf("GET %s: got %v, want a *BlockedError", u, err)
		}
	}

	open := New(Options{AllowPrivate: true}).Client(2 * time.Second)
	resp, err := open.Get(srv.URL + "/ok")
	if err != nil {
		t.Fatalf("AllowPrivate: GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("AllowPrivate: got %d, want 200", resp.StatusCode)
	}
	resp, err = open.Get(srv.URL + "/redirect")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("redirect: got %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, ErrRedirect) {
		t.Fatalf("redirect: got %v, want ErrRedirect", err)
	}
}
