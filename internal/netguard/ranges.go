package netguard

import "net/netip"

// Range is one entry of the guard's table: a prefix that outbound calls to
// tenant-chosen URLs must not reach, and where it comes from.
type Range struct {
	Prefix netip.Prefix
	Name   string // as in the IANA registry
	Source string // the RFC that assigns it
}

// blocked lists every address range the guard refuses. It follows the IANA
// IPv4 and IPv6 Special-Purpose Address Registries
// (iana-ipv4-special-registry, iana-ipv6-special-registry): every entry
// whose "Globally Reachable" is False or N/A is here, plus the multicast
// blocks and the deprecated IPv6 forms that the special-purpose registries
// do not list. Entries the registries mark globally reachable and that lie
// outside a wider blocked entry (192.31.196.0/24 and 192.175.48.0/24 AS112,
// 192.52.193.0/24 AMT, 2620:4f:8000::/48 AS112) stay reachable: they are
// public anycast services. Two forms carry an IPv4 address and are decided
// by that address instead (see translated).
var blocked = []Range{
	// IPv4 Special-Purpose Address Registry.
	{netip.MustParsePrefix("0.0.0.0/8"), "\"This network\"", "RFC 791"},                      // includes 0.0.0.0/32, "this host", which reaches the local machine on Linux
	{netip.MustParsePrefix("10.0.0.0/8"), "Private-Use", "RFC 1918"},                         // private networks
	{netip.MustParsePrefix("100.64.0.0/10"), "Shared Address Space", "RFC 6598"},             // carrier-grade NAT; Alibaba Cloud's metadata service is 100.100.100.200
	{netip.MustParsePrefix("127.0.0.0/8"), "Loopback", "RFC 1122"},                           // this host
	{netip.MustParsePrefix("169.254.0.0/16"), "Link Local", "RFC 3927"},                      // includes the cloud metadata address 169.254.169.254
	{netip.MustParsePrefix("172.16.0.0/12"), "Private-Use", "RFC 1918"},                      // private networks
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF Protocol Assignments", "RFC 6890"},         // DS-Lite (192.0.0.0/29), dummy (.8), PCP and TURN anycast (.9, .10), NAT64 discovery (.170, .171): no issuer lives here
	{netip.MustParsePrefix("192.0.2.0/24"), "Documentation (TEST-NET-1)", "RFC 5737"},        // examples only
	{netip.MustParsePrefix("192.88.99.0/24"), "Deprecated (6to4 Relay Anycast)", "RFC 7526"}, // retired relays
	{netip.MustParsePrefix("192.168.0.0/16"), "Private-Use", "RFC 1918"},                     // private networks
	{netip.MustParsePrefix("198.18.0.0/15"), "Benchmarking", "RFC 2544"},                     // lab networks, often internal
	{netip.MustParsePrefix("198.51.100.0/24"), "Documentation (TEST-NET-2)", "RFC 5737"},     // examples only
	{netip.MustParsePrefix("203.0.113.0/24"), "Documentation (TEST-NET-3)", "RFC 5737"},      // examples only
	{netip.MustParsePrefix("240.0.0.0/4"), "Reserved", "RFC 1112"},                           // future use; some stacks route it internally
	{netip.MustParsePrefix("255.255.255.255/32"), "Limited Broadcast", "RFC 919"},            // inside 240.0.0.0/4, listed on its own by IANA
	{netip.MustParsePrefix("224.0.0.0/4"), "Multicast", "RFC 5771"},                          // IANA multicast registry: never a unicast server

	// IPv6 Special-Purpose Address Registry.
	{netip.MustParsePrefix("::1/128"), "Loopback Address", "RFC 4291"},                       // this host
	{netip.MustParsePrefix("::/128"), "Unspecified Address", "RFC 4291"},                     // reaches this host on some stacks
	{netip.MustParsePrefix("64:ff9b:1::/48"), "IPv4-IPv6 Translat. (local use)", "RFC 8215"}, // a network's own NAT64: reaches its IPv4 side
	{netip.MustParsePrefix("100::/64"), "Discard-Only Address Block", "RFC 6666"},            // blackhole
	{netip.MustParsePrefix("100:0:0:1::/64"), "Dummy IPv6 Prefix", "RFC 9780"},               // never a destination
	{netip.MustParsePrefix("2001::/23"), "IETF Protocol Assignments", "RFC 2928"},            // Teredo (2001::/32, embeds an IPv4 address), benchmarking (2001:2::/48), ORCHID, PCP/TURN anycast: no issuer lives here
	{netip.MustParsePrefix("2001:db8::/32"), "Documentation", "RFC 3849"},                    // examples only
	{netip.MustParsePrefix("2002::/16"), "6to4", "RFC 3056"},                                 // embeds an IPv4 address (bits 16–47), which may be internal
	{netip.MustParsePrefix("3fff::/20"), "Documentation", "RFC 9637"},                        // examples only
	{netip.MustParsePrefix("5f00::/16"), "Segment Routing (SRv6) SIDs", "RFC 9602"},          // routing infrastructure
	{netip.MustParsePrefix("fc00::/7"), "Unique-Local", "RFC 4193"},                          // private networks
	{netip.MustParsePrefix("fe80::/10"), "Link-Local Unicast", "RFC 4291"},                   // this link

	// Not in the IPv6 special-purpose registry, refused all the same.
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)", "RFC 4291 §2.5.5.1"}, // ::a.b.c.d, which some stacks still route as IPv4
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated (SIIT)", "RFC 2765"},      // ::ffff:0:a.b.c.d
	{netip.MustParsePrefix("fec0::/10"), "Site-Local (deprecated)", "RFC 3879"},           // the old private range
	{netip.MustParsePrefix("ff00::/8"), "Multicast", "RFC 4291"},                          // never a unicast server
}

// translated lists the IPv6 forms whose last 32 bits are an IPv4 address
// that the connection really reaches: the address is allowed exactly when
// that IPv4 address is.
var translated = []Range{
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped Address", "RFC 4291"},        // ::ffff:10.0.0.1 is 10.0.0.1
	{netip.MustParsePrefix("64:ff9b::/96"), "IPv4-IPv6 Translat. (NAT64)", "RFC 6052"}, // 64:ff9b::10.0.0.1 reaches 10.0.0.1 through the network's NAT64
}

// Ranges returns the table of refused ranges followed by the IPv6 forms
// that embed an IPv4 address, for documentation and tests.
func Ranges() (refused, embedding []Range) {
	return append([]Range(nil), blocked...), append([]Range(nil), translated...)
}
