/** IP address literals: parsing, and whether one points inside a network rather than at the Internet. */

/** IPv4 ranges that never name a public host: [network, prefix length]. */
const PRIVATE_V4: ReadonlyArray<readonly [number, number]> = [
  [0x00000000, 8], // 0.0.0.0/8 "this network", 0.0.0.0 unspecified
  [0x0a000000, 8], // 10/8 private
  [0x64400000, 10], // 100.64/10 carrier-grade NAT
  [0x7f000000, 8], // 127/8 loopback
  [0xa9fe0000, 16], // 169.254/16 link-local (cloud metadata lives here)
  [0xac100000, 12], // 172.16/12 private
  [0xc0000000, 24], // 192.0.0/24 IETF protocol assignments
  [0xc0a80000, 16], // 192.168/16 private
  [0xc6120000, 15], // 198.18/15 benchmarking
  [0xe0000000, 4], // 224/4 multicast
  [0xf0000000, 4], // 240/4 reserved, 255.255.255.255 broadcast
];

/** Parses a dotted-quad IPv4 literal (four decimal parts) into a 32-bit number, or null. */
export function parseIpv4(text: string): number | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return null;
    value = value * 256 + Number(part);
  }
  return value;
}

/** Parses an IPv6 literal (brackets, an embedded IPv4 tail and `::` allowed) into eight 16-bit groups, or null. */
export function parseIpv6(text: string): number[] | null {
  let rest = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (rest.includes("%")) rest = rest.slice(0, rest.indexOf("%")); // a zone id names no other host
  const v4At = rest.lastIndexOf(":");
  if (v4At >= 0 && rest.includes(".", v4At)) {
    const v4 = parseIpv4(rest.slice(v4At + 1));
    if (v4 === null) return null;
    rest = `${rest.slice(0, v4At + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = rest.split("::");
  if (halves.length > 2) return null;
  const parsed: number[][] = [];
  for (const half of halves.map((part) => part === "" ? [] : part.split(":"))) {
    const numbers: number[] = [];
    for (const group of half) {
      if (!/^[0-9a-f]{1,4}$/i.test(group)) return null;
      numbers.push(parseInt(group, 16));
    }
    parsed.push(numbers);
  }
  if (parsed.length === 1) return parsed[0].length === 8 ? parsed[0] : null;
  const missing = 8 - parsed[0].length - parsed[1].length;
  if (missing < 1) return null;
  return [...parsed[0], ...new Array<number>(missing).fill(0), ...parsed[1]];
}

function inV4Ranges(value: number): boolean {
  return PRIVATE_V4.some(([network, bits]) =>
    (value >>> (32 - bits)) === (network >>> (32 - bits))
  );
}

function v6IsPrivate(g: number[]): boolean {
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  const embedded = (hi: number, lo: number) => inV4Ranges(((hi << 16) >>> 0) + lo);
  if (zeroTo(8)) return true; // :: unspecified
  if (zeroTo(7) && g[7] === 1) return true; // ::1 loopback
  if (zeroTo(5) && g[5] === 0xffff) return embedded(g[6], g[7]); // ::ffff:a.b.c.d mapped
  if (zeroTo(6)) return embedded(g[6], g[7]); // ::a.b.c.d compatible (deprecated)
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) {
    return embedded(g[6], g[7]); // 64:ff9b::/96 NAT64
  }
  if (g[0] === 0x2002) return embedded(g[1], g[2]); // 2002::/16 6to4
  if ((g[0] & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((g[0] & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((g[0] & 0xffc0) === 0xfec0) return true; // fec0::/10 site-local (deprecated)
  if ((g[0] & 0xff00) === 0xff00) return true; // ff00::/8 multicast
  return false;
}

/**
 * Whether an IP literal is loopback, private, link-local, unspecified, multicast or otherwise not a
 * public host (IPv4-mapped and similar IPv6 forms judged by their IPv4 part); null when the text is
 * not an IP literal at all.
 */
export function isPrivateAddress(text: string): boolean | null {
  const v4 = parseIpv4(text);
  if (v4 !== null) return inV4Ranges(v4);
  const v6 = parseIpv6(text);
  return v6 === null ? null : v6IsPrivate(v6);
}

/** Whether a host name is `localhost` or under it, names that always mean this machine. */
export function isLocalhostName(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost");
}
