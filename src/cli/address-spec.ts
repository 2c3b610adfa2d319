/**
 * The address arguments of `weft attach`, `expose` and `hide` (Weave's forms), and what they
 * mean on one of weft's networks. Pure: the commands that use them live in attach.ts.
 */
import { parseAddress, parseCidr, parseCidrAddress, rangeContains } from "../ipam/address.js";
import { DEFAULT_NETWORK } from "../switch/network.js";
import { UsageError } from "./options.js";

/** One address request of `weft attach` (Weave's forms). */
export type AddressSpec =
  { kind: "default" } | { kind: "subnet"; cidr: string } | { kind: "claim"; cidr: string };

/** `net:default`, `net:CIDR` or `ADDR/PREFIX`; checked (errors name `command`). */
export function parseAddressSpec(text: string, command = "attach"): AddressSpec {
  if (text === "net:default") return { kind: "default" };
  try {
    if (text.startsWith("net:")) {
      parseCidr(text.slice(4), "subnet");
      return { kind: "subnet", cidr: text.slice(4) };
    }
    parseCidrAddress(text, "address");
    return { kind: "claim", cidr: text };
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message}`);
  }
}

/**
 * The address requests for a network: `net:default` means the network's own subnet, and on a
 * named network every address must lie inside that subnet (an address elsewhere would be
 * unreachable there, and would blur which network it names).
 */
export function specsForNetwork(
  specs: readonly AddressSpec[],
  place: { network: string; subnet: string | undefined },
  command: string,
): AddressSpec[] {
  const wanted: AddressSpec[] = specs.length === 0 ? [{ kind: "default" }] : [...specs];
  if (place.network === DEFAULT_NETWORK) return wanted;
  if (place.subnet === undefined) {
    if (wanted.some((s) => s.kind === "default")) {
      throw new UsageError(
        `${command}: network ${place.network} has no subnet: give ADDR/PREFIX or net:CIDR, or launch weft with --network ${place.network}=CIDR`,
      );
    }
    return wanted;
  }
  const subnet = parseCidr(place.subnet, "subnet");
  return wanted.map((spec) => {
    if (spec.kind === "default") return { kind: "subnet", cidr: place.subnet! };
    const text = spec.kind === "subnet" ? spec.cidr : spec.cidr.split("/")[0]!;
    const range = spec.kind === "subnet" ? parseCidr(text, "subnet") : undefined;
    const inside =
      range !== undefined
        ? range.start >= subnet.start && range.end <= subnet.end
        : rangeContains(subnet, parseAddress(text));
    if (!inside) {
      throw new UsageError(
        `${command}: ${spec.cidr} is not in network ${place.network}'s subnet ${place.subnet}`,
      );
    }
    return spec;
  });
}
