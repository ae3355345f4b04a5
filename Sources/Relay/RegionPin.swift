/// The region a `peers` rule or an ingest token pins (its zone's region from `zoneRegions`, or
/// its own region), checked against the configuration's regions. `label` names the entry in the
/// message (`peers[0]`, `tokens[2]`). nil region: the entry pins nothing.
func pinnedRegion(zone: String?, region: String?, label: String, regions: [String],
                  zoneRegions: [String: String]) -> Result<String?, RegionPinError> {
    var resolved = region
    if let z = zone {
        guard let zr = zoneRegions[z] else {
            return .failure(RegionPinError(message: "\(label).zone: zone '\(z)' is not in zoneRegions, so its region is unknown; add it there"))
        }
        resolved = zr
    }
    if let r = resolved, !regions.contains(r) {
        let known = regions.isEmpty ? "none (no region configured)" : regions.joined(separator: ", ")
        return .failure(RegionPinError(message: "\(label): region '\(r)' is not a region of this configuration (known: \(known))"))
    }
    return .success(resolved)
}

struct RegionPinError: Error { let message: String }
