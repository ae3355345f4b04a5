import ArgumentParser
import Relay

struct TracerelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracerelay",
        abstract: "Trace collector/relay for service meshes (Kuma, Kong Mesh, Envoy).",
        discussion: """
        Accepts Zipkin and Datadog spans over HTTP/1.1 and HTTP/2 (h2c), routes them by mesh tags with Kuma's \
        Mesh / TrafficTrace / MeshTrace resources, keeps each span in its region, and buffers per backend.
        Start with `tracerelay serve` (embedded default config) or `tracerelay serve --config FILE`.
        """,
        version: tracerelayVersion,
        subcommands: [ServeCommand.self, CheckCommand.self, ExplainCommand.self, SpillCommand.self, HealthCommand.self],
        defaultSubcommand: nil)
}

let tracerelayVersion = relayVersion
