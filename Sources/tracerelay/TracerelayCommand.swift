import ArgumentParser

struct TracerelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tracerelay", abstract: "Trace collector/relay for service meshes.",
                                                    subcommands: [SpillCommand.self])
    func run() throws {}
}
