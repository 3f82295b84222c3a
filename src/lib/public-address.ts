import { lookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';

// Which addresses a callback may reach. This is an allowlist: an address passes only when it is
// globally routable unicast, so a range nobody thought of is refused rather than let through.
// The tables follow the IANA IPv4 and IPv6 Special-Purpose Address Registries. Every entry is
// refused (but for the well-known NAT64 prefix, judged by the IPv4 address it embeds), even the few
// IANA marks globally reachable (AS112, AMT, PCP and TURN anycast): they are protocol
// infrastructure, never a webhook receiver.

/** [network, prefix length, what it is]; the last column names the range in refusal messages. */
type Range = readonly [network: string, prefix: number, what: string];

/** IPv4 passes unless it is in one of these. */
const IPV4_REFUSED: readonly Range[] = [
  ['0.0.0.0', 8, '"this" network'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared address space (carrier-grade NAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'], // cloud metadata services listen on 169.254.169.254
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.31.196.0', 24, 'AS112'],
  ['192.52.193.0', 24, 'AMT'],
  ['192.88.99.0', 24, '6to4 relay anycast'],
  ['192.168.0.0', 16, 'private'],
  ['192.175.48.0', 24, 'AS112'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'], // includes the limited broadcast 255.255.255.255
];

/**
 * IPv6 passes only inside global unicast. Everything else is refused with it: unspecified ::,
 * loopback ::1, IPv4-compatible ::/96, the local-use NAT64 prefix 64:ff9b:1::/48, discard-only
 * 100::/64, unique local fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8.
 */
const IPV6_GLOBAL_UNICAST: Range = ['2000::', 3, 'outside global unicast 2000::/3'];

/** Inside global unicast, these are refused. */
const IPV6_REFUSED: readonly Range[] = [
  // Teredo 2001::/32 (tunnels to an IPv4 address hidden in it), benchmarking, ORCHID and anycast services.
  ['2001::', 23, 'IETF protocol assignments'],
  ['2001:db8::', 32, 'documentation'],
  ['2002::', 16, '6to4'], // tunnels to whatever IPv4 address bits 16-47 name, 10.0.0.1 included
  ['2620:4f:8000::', 48, 'AS112'],
  ['3fff::', 20, 'documentation'],
  ['5f00::', 16, 'SRv6 segment identifiers'],
];

/**
 * IPv6 prefixes that carry an IPv4 address in their last 32 bits, judged as that address: mapped
 * ::ffff:a.b.c.d (how a dual-stack socket reaches IPv4) and the well-known NAT64 prefix
 * 64:ff9b::/96, which IANA marks globally reachable because its translator reaches the IPv4 it embeds.
 */
const IPV6_EMBEDDING_IPV4: readonly Range[] = [
  ['::ffff:0.0.0.0', 96, 'IPv4-mapped'],
  ['64:ff9b::', 96, 'NAT64'],
];

function ipv4Bits(address: string): bigint {
  return address.split('.').reduce((bits, octet) => (bits << 8n) | BigInt(octet), 0n);
}

/** The 128 bits of an IPv6 address that isIP accepted (so its syntax is already known good). */
function ipv6Bits(address: string): bigint {
  // A zone (fe80::1%eth0) names an interface, not part of the address.
  let text = address.replace(/%.*$/, '');
  const dotted = /\d+\.\d+\.\d+\.\d+$/.exec(text);
  if (dotted) {
    const v4 = ipv4Bits(dotted[0]);
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const groupsOf = (part: string | undefined) => (part ? part.split(':') : []);
  const [left, right] = [groupsOf(head), groupsOf(tail)];
  // "::" stands for as many zero groups as make eight.
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(zeros).fill('0'), ...right].reduce((bits, group) => (bits << 16n) | BigInt(`0x${group}`), 0n);
}

interface ParsedRange {
  network: bigint;
  /** How far to shift an address right so that only its first `prefix` bits remain. */
  hostBits: bigint;
  what: string;
}

function parseRanges(ranges: readonly Range[], width: 32 | 128): ParsedRange[] {
  return ranges.map(([network, prefix, what]) => {
    const hostBits = BigInt(width - prefix);
    return { network: (width === 32 ? ipv4Bits(network) : ipv6Bits(network)) >> hostBits, hostBits, what };
  });
}

const ipv4Refused = parseRanges(IPV4_REFUSED, 32);
const [ipv6GlobalUnicast] = parseRanges([IPV6_GLOBAL_UNICAST], 128) as [ParsedRange];
const ipv6Refused = parseRanges(IPV6_REFUSED, 128);
const ipv6EmbeddingIpv4 = parseRanges(IPV6_EMBEDDING_IPV4, 128);

const within = (bits: bigint, range: ParsedRange) => bits >> range.hostBits === range.network;

function ipv4Refusal(bits: bigint): string | undefined {
  return ipv4Refused.find((range) => within(bits, range))?.what;
}

/** Why `address` is not a public address, or undefined when it is. */
function refusalOf(address: string): string | undefined {
  const family = isIP(address);
  if (family === 4) return ipv4Refusal(ipv4Bits(address));
  if (family !== 6) return 'not an IP address';
  const bits = ipv6Bits(address);
  if (ipv6EmbeddingIpv4.some((range) => within(bits, range))) return ipv4Refusal(bits & 0xffffffffn);
  if (!within(bits, ipv6GlobalUnicast)) return ipv6GlobalUnicast.what;
  return ipv6Refused.find((range) => within(bits, range))?.what;
}

/** Whether `address` (an IPv4 or IPv6 literal) is a globally routable unicast address. */
export function isPublicAddress(address: string): boolean {
  return refusalOf(address) === undefined;
}

export class NonPublicDestinationError extends Error {
  override name = 'NonPublicDestinationError';
}

type LookupCallback = (error: Error | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A DNS lookup for outgoing connections that fails unless every address the name resolves to is
 * public. Used as the connection's own lookup, the address checked is the address connected
 * to: a name that answers "public" to a first lookup and "169.254.169.254" to the next (DNS
 * rebinding) gains nothing.
 */
export function publicOnlyLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  lookup(hostname, { ...options, all: true, verbatim: true }, (error, addresses) => {
    if (error) return callback(error, []);
    for (const { address } of addresses) {
      const refusal = refusalOf(address);
      if (refusal) return callback(new NonPublicDestinationError(`${hostname} resolves to non-public address ${address} (${refusal})`), []);
    }
    if (options.all) return callback(null, addresses);
    return callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

/** IP literals are connected to without any lookup, so they are checked here, before the request. */
export function assertPublicHost(url: string): void {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (!isIP(host)) return;
  const refusal = refusalOf(host);
  if (refusal) throw new NonPublicDestinationError(`${host} is not a public address (${refusal})`);
}

/** The NonPublicDestinationError behind a failed request, however deep the HTTP client wrapped it. */
export function nonPublicCause(error: unknown): NonPublicDestinationError | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    if (current instanceof NonPublicDestinationError) return current;
  }
  return undefined;
}
