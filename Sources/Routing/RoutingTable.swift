import Spans
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which resource decided a span's backend.
public enum MatchedPolicy: Hashable, Sendable {
    /// Index into `RelayConfig.trafficTraces`.
    case trafficTrace(Int)
    /// Index into `RelayConfig.meshTraces`.
    case meshTrace(Int)
    /// No policy matched: the Mesh's default backend (index into `RelayConfig.meshes`).
    case meshDefault(Int)
}

/// The outcome of routing one span.
public struct RouteDecision: Hashable, Sendable {
    /// Why a span is not sent anywhere.
    public enum Refusal: String, Hashable, Sendable {
        /// The span's region is known and the chosen backend is elsewhere (or unpinned), with no
        /// fallback backend in the span's region. Counted as `spans_refused_residency_total`.
        case residency
        /// The span's mesh has no tracing backend.
        case noBackend = "no_backend"
        /// A matching MeshTrace has `backends: []` (tracing switched off).
        case tracingDisabled = "tracing_disabled"
        /// The span names a mesh (`kuma.mesh`) the configuration does not define.
        case unknownMesh = "unknown_mesh"
        /// The request came from a client whose certificate identity speaks for one region
        /// (`peers`), and the span's region is another one (or unknown).
        case identity
    }

    /// Index into `RoutingTable.backends`; nil when refused.
    public var backend: Int?
    public var refusal: Refusal?
    /// Kept by sampling (always false when refused).
    public var sampled: Bool
    /// Index into `RoutingTable.tagSets` of tags to add to the span (MeshTrace literals); 0 = none.
    public var addedTags: Int
    public var matched: MatchedPolicy?
    /// The span's region as an index into `RoutingTable.regionNames`; nil when unknown, -1 when
    /// the span names a region the configuration does not know (still pinned: fail closed).
    public var region: Int?
    /// The region's fallback backend was used instead of the selected one.
    public var usedFallback: Bool
    /// The backend the policies selected before region pinning (for refusals and `explain`).
    public var selectedBackend: Int?
}

/// Spans of one batch sorted by destination, for the pipeline.
public struct BatchRoutes: Sendable {
    public struct Routed: Hashable, Sendable {
        public var span: UInt32
        /// Index into `RoutingTable.tagSets`; 0 = nothing to add.
        public var addedTags: UInt32
        public init(span: UInt32, addedTags: UInt32) { self.span = span; self.addedTags = addedTags }
    }
    public struct RefusalCount: Hashable, Sendable {
        public var reason: RouteDecision.Refusal
        /// Region label: a configured region name, `other` for a region the config does not name,
        /// `unknown` when the span has none.
        public var region: String
        /// The selected backend's name, or "" when none.
        public var backend: String
        public var count: Int
    }
    /// Kept spans per backend index.
    public var perBackend: [[Routed]]
    /// Spans dropped by sampling, per backend index.
    public var sampledOut: [Int]
    public var refused: [RefusalCount]
    public var routedCount: Int { perBackend.reduce(0) { $0 + $1.count } }
}

/// The configuration compiled for routing: immutable, shared by all loops, rebuilt on reload.
/// Routing resolves a span's mesh tags to byte slices (no String per span) and evaluates the
/// compiled policies; `Router` adds a cache keyed by the resolved tag set.
public struct RoutingTable: Sendable {
    public let config: RelayConfig
    public let backends: [BackendConfig]
    /// Every region the configuration names (relay, regions, zone map, backends), sorted.
    public let regionNames: [String]
    /// Tag lists added by MeshTraces; index 0 is empty.
    public let tagSets: [[TagPair]]
    /// Parse warnings plus residency warnings.
    public let warnings: [ConfigIssue]
    /// Whether region pinning applies: true as soon as any backend has `region:` or the Relay
    /// document has a `regions:` entry. A configuration that pins nothing delivers every span,
    /// whatever region tag it carries.
    public let residencyEnabled: Bool

    let arena: ByteArena
    let keys: [KeyDef]
    /// Aliases grouped by key length for a one-lookup check of each span tag.
    let aliasesByLength: [[Alias]]
    /// The same aliases flat, sorted by length: those of length L are `aliasFlat[aliasStart[L]..<aliasStart[L+1]]`.
    let aliasFlat: [Alias]
    let aliasStart: [Int32]
    /// TrafficTrace selectors indexed by their exact `kuma.io/service` value, and the rest,
    /// so a cache miss checks only the selectors that can match.
    let selectorsByService: [[UInt8]: [SelectorRef]]
    let selectorsAnyService: [SelectorRef]
    let conds: [Cond]
    let meshes: [CompiledMesh]
    let tts: [CompiledTT]
    let mts: [CompiledMT]
    let zoneRegions: [(zone: Bytes, region: Int)]
    let regionBytes: [Bytes]
    let backendRegion: [Int]
    let fallbackByRegion: [Int]
    let backendThreshold: [Threshold]
    let defaultMesh: Int
    /// The mesh index of each TrafficTrace (-1 when its mesh is not defined).
    let ttMesh: [Int]

    // MARK: Compiled shapes

    struct KeyDef { var name: String }
    struct Alias { var key: Int; var rank: Int; var bytes: Bytes; var word: UInt64 }
    struct Cond { var key: Int; var value: Bytes; var wildcard: Bool }
    struct CompiledMesh { var name: Bytes; var nameString: String; var defaultBackend: Int; var tts: [Int]; var mts: [Int] }
    struct SelectorRef { var tt: Int; var selector: Int }
    struct CompiledTT { var selectors: [Range<Int>]; var exact: [Int]; var backend: Int; var time: Int64?; var document: Int }
    struct CompiledMT { var conds: Range<Int>; var rank: Int; var backend: Int; var threshold: Threshold?; var tagSet: Int }
    struct Threshold: Hashable {
        var all: Bool
        var below: UInt64
        init(percent: Double) {
            all = percent >= 100
            below = percent <= 0 ? 0 : (percent >= 100 ? .max : UInt64(percent / 100 * 18446744073709551616.0))
        }
    }

    static let meshKey = 0, serviceKey = 1, zoneKey = 2, regionKey = 3

    /// Compiles `config`; throws when a name refers to nothing or a policy contradicts a region pin.
    public init(_ config: RelayConfig) throws(ConfigError) {
        var compiler = TableCompiler(config: config)
        compiler.compile()
        let errors = compiler.issues.filter { $0.severity == .error }
        if !errors.isEmpty { throw ConfigError(errors) }
        self.config = config
        self.backends = config.backends
        self.regionNames = compiler.regionNames
        self.tagSets = compiler.tagSets
        self.warnings = config.diagnostics + compiler.issues
        self.residencyEnabled = config.backends.contains { $0.region != nil } || !config.regions.isEmpty
        self.arena = ByteArena(compiler.arena.bytes)
        self.keys = compiler.keys
        var byLen: [[Alias]] = Array(repeating: [], count: 65)
        for a in compiler.aliases where a.bytes.count < 64 { byLen[Int(a.bytes.count)].append(a) }
        self.aliasesByLength = byLen
        var flat: [Alias] = []
        var starts: [Int32] = []
        for l in 0...64 { starts.append(Int32(flat.count)); flat += byLen[l] }
        starts.append(Int32(flat.count))
        self.aliasFlat = flat
        self.aliasStart = starts
        self.selectorsByService = compiler.selectorsByService
        self.selectorsAnyService = compiler.selectorsAnyService
        self.conds = compiler.conds
        self.meshes = compiler.meshes
        self.tts = compiler.tts
        self.mts = compiler.mts
        self.zoneRegions = compiler.zoneRegions
        self.regionBytes = compiler.regionBytes
        self.backendRegion = compiler.backendRegion
        self.fallbackByRegion = compiler.fallbackByRegion
        self.backendThreshold = config.backends.map { Threshold(percent: $0.sampling) }
        self.defaultMesh = compiler.defaultMesh
        self.ttMesh = compiler.ttMesh
    }

    public func backendIndex(named name: String) -> Int? { backends.firstIndex { $0.name == name } }

    // MARK: Routing one span (convenience; the pipeline uses route(_ batch:) or a Router)

    /// Routes span `index` of `batch`, resolving request-level tags each call.
    public func route(_ index: Int, in batch: SpanBatch) -> RouteDecision {
        let ctx = RequestContext(table: self, metadata: batch.metadata)
        return ctx.withSlots { base in
            batch.storage.withUnsafeBytes { storage in
                batch.tags.withUnsafeBufferPointer { tags in
                    let span = batch.spans[index]
                    return withUnsafeTemporaryAllocation(of: Slot.self, capacity: keys.count) { slots in
                        withResolver { r in r.resolve(span, storage: storage, tags: tags, base: base, into: slots) }
                        let v = verdict(UnsafeBufferPointer(slots), trace: nil)
                        return decision(v, span: span)
                    }
                }
            }
        }
    }

    /// Routes every span of `batch` (with a cache for this batch only).
    public func route(_ batch: SpanBatch) -> BatchRoutes {
        var router = Router(self, capacity: 256)
        return router.route(batch)
    }

    // MARK: Internals shared with Router

    @inline(__always)
    func decision(_ v: Verdict, span: Span) -> RouteDecision {
        RouteDecision(backend: v.backend >= 0 ? v.backend : nil, refusal: v.refusal, sampled: sample(span, v),
                      addedTags: v.tagSet, matched: v.matched, region: v.region == Int.min ? nil : v.region,
                      usedFallback: v.usedFallback, selectedBackend: v.selected >= 0 ? v.selected : nil)
    }

    /// The trace-id sampling decision, after upstream decisions: Zipkin debug and Datadog
    /// priority ≥ 2 are kept, priority ≤ -1 dropped. The hash depends on the low 64 bits of the
    /// trace id only, so every relay and every span of a trace (Zipkin or Datadog) agree.
    @inline(__always)
    func sample(_ span: Span, _ v: Verdict) -> Bool {
        if v.backend < 0 { return false }
        if span.flags.contains(.debug) { return true }
        if let p = span.samplingPriority {
            if p >= 2 { return true }
            if p <= -1 { return false }
        }
        return v.threshold.all || RoutingTable.traceHash(span.traceID) < v.threshold.below
    }

    /// `sample` for a routed span given its backend's threshold.
    @inline(__always)
    static func sample(_ span: Span, all: Bool, below: UInt64) -> Bool {
        if span.flags.contains(.debug) { return true }
        if let p = span.samplingPriority {
            if p >= 2 { return true }
            if p <= -1 { return false }
        }
        return all || traceHash(span.traceID) < below
    }

    /// Knuth's multiplicative hash, as Datadog's agent uses for trace-id sampling.
    @inline(__always) public static func traceHash(_ id: TraceID) -> UInt64 { id.low &* 1_111_111_111_111_111_111 }

    /// Runs `body` with raw views of the alias tables (valid only inside).
    @inline(__always)
    func withResolver<R>(_ body: (Resolver) -> R) -> R {
        aliasFlat.withUnsafeBufferPointer { flat in
            aliasStart.withUnsafeBufferPointer { starts in
                body(Resolver(flat: flat, starts: starts, arena: UnsafeRawPointer(arena.base)))
            }
        }
    }

    /// Resolves span tags to mesh tags over raw pointers, so the per-span loop does no
    /// reference counting or allocation.
    struct Resolver {
        let flat: UnsafeBufferPointer<Alias>
        let starts: UnsafeBufferPointer<Int32>
        let arena: UnsafeRawPointer

        /// Fills `slots` with the span's resolved mesh tags: request-level values (already in
        /// `base`) win; then span tags (earlier alias wins, e.g. `kuma.zone` before `zone`); then
        /// the service name as `kuma.io/service`.
        @inline(__always)
        func resolve(_ span: Span, storage: UnsafeRawBufferPointer, tags: UnsafeBufferPointer<Tag>,
                     base: UnsafeBufferPointer<Slot>, into slots: UnsafeMutableBufferPointer<Slot>) {
            for i in 0..<slots.count { slots[i] = base[i] }
            let sbase = storage.baseAddress
            var t = Int(span.tags.lowerBound)
            let end = Int(span.tags.upperBound)
            while t < end {
                let tag = tags[t]
                t += 1
                let klen = Int(tag.key.count)
                guard klen < 64 else { continue }
                var a = Int(starts[klen])
                let aEnd = Int(starts[klen + 1])
                if a == aEnd { continue }
                let kp = sbase! + Int(tag.key.offset)
                let word = loadWord(kp, klen)
                while a < aEnd {
                    let al = flat[a]
                    a += 1
                    guard al.word == word else { continue }
                    if klen > 8, !fastEqual(kp + 8, arena + Int(al.bytes.offset) + 8, klen - 8) { continue }
                    if slots[al.key].rank > al.rank {
                        slots[al.key] = Slot(ptr: sbase.map { $0 + Int(tag.value.offset) }, count: Int(tag.value.count), rank: al.rank)
                    }
                    break
                }
            }
            if !slots[RoutingTable.serviceKey].isPresent, span.localEndpoint.serviceName.count > 0 {
                let s = span.localEndpoint.serviceName
                slots[RoutingTable.serviceKey] = Slot(ptr: sbase! + Int(s.offset), count: Int(s.count), rank: Int.max - 1)
            }
        }
    }

    /// What routing decides from resolved tags alone (everything but the sampling coin).
    struct Verdict {
        var backend: Int = -1
        var selected: Int = -1
        var refusal: RouteDecision.Refusal?
        var matched: MatchedPolicy?
        var tagSet: Int = 0
        var region: Int = Int.min
        var usedFallback = false
        var threshold = Threshold(percent: 0)
    }

    @inline(__always) func matches(_ c: Cond, _ slots: UnsafeBufferPointer<Slot>) -> Bool {
        let s = slots[c.key]
        guard s.isPresent else { return false }
        return c.wildcard || arena.equals(c.value, s.ptr, s.count)
    }

    /// Evaluates policies, defaults and region pinning. `trace` collects reasons for `explain`.
    func verdict(_ slots: UnsafeBufferPointer<Slot>, trace: ExplainTrace?) -> Verdict {
        var v = Verdict()
        // Mesh: the span's `kuma.mesh`; else the only Mesh, or the one named `default`.
        var meshIndex = defaultMesh
        let ms = slots[RoutingTable.meshKey]
        if ms.isPresent {
            meshIndex = meshes.firstIndex { arena.equals($0.name, ms.ptr, ms.count) } ?? -1
        }
        // Region: explicit `region` tag, else the zone map.
        let rs = slots[RoutingTable.regionKey]
        if rs.isPresent {
            v.region = regionBytes.firstIndex { arena.equals($0, rs.ptr, rs.count) } ?? -1
            trace?.note("region \(rs.string ?? "") from the span's 'region' tag")
        } else {
            let zs = slots[RoutingTable.zoneKey]
            if zs.isPresent {
                if let zr = zoneRegions.first(where: { arena.equals($0.zone, zs.ptr, zs.count) }) {
                    v.region = zr.region
                    trace?.note("region \(regionNames[zr.region]) from zoneRegions (zone \(zs.string ?? ""))")
                } else {
                    trace?.note("zone \(zs.string ?? "") is not in zoneRegions: region unknown, not pinned")
                }
            } else {
                trace?.note("no region or zone tag: region unknown, not pinned")
            }
        }
        guard meshIndex >= 0, meshIndex < meshes.count else {
            v.refusal = meshIndex < 0 ? .unknownMesh : .noBackend
            trace?.note(meshIndex < 0 ? "mesh \(ms.string ?? "") is not defined" : "no Mesh resource defined")
            return v
        }
        let mesh = meshes[meshIndex]
        trace?.note("mesh \(mesh.nameString)")
        // MeshTrace first: Kuma's docs say not to combine it with TrafficTrace; where both
        // match, the newer targetRef policy wins.
        var bestMT = -1
        for i in mesh.mts {
            let mt = mts[i]
            var ok = true
            for c in conds[mt.conds] where !matches(c, slots) { ok = false; break }
            trace?.candidate(.meshTrace(i), matched: ok, detail: "rank \(mt.rank)")
            if ok, bestMT < 0 || mt.rank > mts[bestMT].rank { bestMT = i }
        }
        if bestMT >= 0 {
            let mt = mts[bestMT]
            v.matched = .meshTrace(bestMT)
            v.tagSet = mt.tagSet
            if mt.backend < 0 {
                v.refusal = .tracingDisabled
                trace?.note("MeshTrace has no backends: tracing switched off")
                return v
            }
            v.selected = mt.backend
            v.threshold = mt.threshold ?? backendThreshold[mt.backend]
        } else {
            // TrafficTrace: more tags, then more exact values, then later modificationTime
            // (when both have one), then the later document. The best (policy, selector) pair
            // is the best policy, since a policy scores as its best matching selector.
            var best = -1
            var bestCount = -1, bestExact = -1
            func consider(_ i: Int, _ count: Int, _ exact: Int) {
                if best < 0 || (count, exact) > (bestCount, bestExact) || ((count, exact) == (bestCount, bestExact) && laterThan(tts[i], tts[best])) {
                    best = i; bestCount = count; bestExact = exact
                }
            }
            if let trace {
                for i in mesh.tts {
                    let tt = tts[i]
                    var count = -1, exact = -1
                    for (si, range) in tt.selectors.enumerated() {
                        var ok = true
                        for c in conds[range] where !matches(c, slots) { ok = false; break }
                        if ok, (range.count, tt.exact[si]) > (count, exact) { count = range.count; exact = tt.exact[si] }
                    }
                    trace.candidate(.trafficTrace(i), matched: count >= 0, detail: count >= 0 ? "\(count) tags, \(exact) exact" : "")
                    if count >= 0 { consider(i, count, exact) }
                }
            } else {
                func check(_ refs: [SelectorRef]) {
                    for r in refs where ttMesh[r.tt] == meshIndex {
                        let range = tts[r.tt].selectors[r.selector]
                        var ok = true
                        for c in conds[range] where !matches(c, slots) { ok = false; break }
                        if ok { consider(r.tt, range.count, tts[r.tt].exact[r.selector]) }
                    }
                }
                check(selectorsAnyService)
                let svc = slots[RoutingTable.serviceKey]
                if svc.isPresent, !selectorsByService.isEmpty {
                    let key = Array(UnsafeRawBufferPointer(start: svc.ptr, count: svc.count))
                    if let refs = selectorsByService[key] { check(refs) }
                }
            }
            if best >= 0 {
                v.matched = .trafficTrace(best)
                v.selected = tts[best].backend >= 0 ? tts[best].backend : mesh.defaultBackend
                if tts[best].backend < 0 { trace?.note("TrafficTrace has no conf.backend: the Mesh's default backend") }
            } else {
                v.matched = .meshDefault(meshIndex)
                v.selected = mesh.defaultBackend
                trace?.note("no policy matched: the Mesh's default backend")
            }
            guard v.selected >= 0 else {
                v.refusal = .noBackend
                trace?.note("Mesh \(mesh.nameString) has no tracing backend")
                return v
            }
            v.threshold = backendThreshold[v.selected]
        }
        // Region pinning, fail closed — only where the configuration pins something.
        v.backend = v.selected
        if !residencyEnabled {
            trace?.note("residency is off (no backend has a region and no regions are configured): the selected backend is used")
        } else if v.region != Int.min {
            let br = backendRegion[v.selected]
            if br != v.region || v.region < 0 {
                let fb = v.region >= 0 ? fallbackByRegion[v.region] : -1
                let spanRegion = v.region >= 0 ? regionNames[v.region] : (rs.string ?? "?")
                let where_ = br >= 0 ? "region \(regionNames[br])" : "no region"
                if fb >= 0 {
                    v.backend = fb
                    v.usedFallback = true
                    v.threshold = backendThreshold[fb]
                    trace?.note("backend \(backends[v.selected].name) has \(where_), span is in \(spanRegion): sent to the region's fallback backend \(backends[fb].name)")
                } else {
                    v.backend = -1
                    v.refusal = .residency
                    trace?.note("backend \(backends[v.selected].name) has \(where_), span is in \(spanRegion), and \(spanRegion) has no fallbackBackend: refused")
                }
            } else {
                trace?.note("backend \(backends[v.selected].name) is in the span's region \(spanRegionName(v.region))")
            }
        } else {
            trace?.note("region unknown: the selected backend is used as is")
        }
        return v
    }

    private func spanRegionName(_ r: Int) -> String { r >= 0 ? regionNames[r] : "other" }

    private func laterThan(_ a: CompiledTT, _ b: CompiledTT) -> Bool {
        if let ta = a.time, let tb = b.time, ta != tb { return ta > tb }
        return a.document > b.document
    }
}

/// Request-level tag values resolved once per batch.
struct RequestContext {
    var bytes: [UInt8] = []
    var spans: [(offset: Int, count: Int, rank: Int)?]

    init(table: RoutingTable, metadata: BatchMetadata) {
        spans = Array(repeating: nil, count: table.keys.count)
        for t in metadata.requestTags {
            var key = t.key
            let hit: RoutingTable.Alias? = key.withUTF8 { k in
                guard k.count < 64 else { return nil }
                for a in table.aliasesByLength[k.count] where table.arena.equals(a.bytes, k.baseAddress, k.count) { return a }
                return nil
            }
            guard let hit else { continue }
            // The first request tag for a key wins: the listener's static tags come before the
            // upstream header's, whichever alias either uses.
            if spans[hit.key] != nil { continue }
            spans[hit.key] = (bytes.count, t.value.utf8.count, hit.rank)
            bytes.append(contentsOf: t.value.utf8)
        }
    }

    /// Slots for the request-level values (rank -1: they beat every span tag).
    func withSlots<R>(_ body: (UnsafeBufferPointer<Slot>) -> R) -> R {
        bytes.withUnsafeBytes { raw in
            withUnsafeTemporaryAllocation(of: Slot.self, capacity: spans.count) { buf in
                for (i, s) in spans.enumerated() {
                    if let s { buf[i] = Slot(ptr: raw.baseAddress.map { $0 + s.offset }, count: s.count, rank: -1) }
                    else { buf[i] = .absent }
                }
                return body(UnsafeBufferPointer(buf))
            }
        }
    }
}
