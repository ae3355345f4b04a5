/// One finding about a configuration file: where it is (document, resource, path, line) and
/// what was expected. Warnings are kept in `RelayConfig.diagnostics`; errors are thrown
/// together as a `ConfigError`.
public struct ConfigIssue: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable { case warning, error }
    public enum Code: String, Sendable, Hashable {
        /// The text is not YAML, or a file could not be read.
        case syntax
        /// A field is not one tracerelay or Kuma knows; it is ignored.
        case unknownField = "unknown_field"
        /// A value has the wrong type or is out of range.
        case invalidValue = "invalid_value"
        /// A required field is absent.
        case missingField = "missing_field"
        /// A name refers to nothing (a backend, a region's fallback).
        case unknownReference = "unknown_reference"
        /// Two definitions of the same thing disagree.
        case conflict
        /// A policy would send one region's spans to another region's backend.
        case residency
        /// A resource kind tracerelay does not use; it is ignored.
        case ignoredResource = "ignored_resource"
    }

    public var severity: Severity
    public var code: Code
    /// 1-based index of the YAML document in the file; nil for whole-file findings.
    public var document: Int?
    /// The resource, e.g. `TrafficTrace 'eu-traces'`.
    public var resource: String?
    /// The field path inside the document, e.g. `selectors[0].match`.
    public var path: String
    /// 1-based line in the file, when known.
    public var line: Int?
    public var message: String

    public init(_ severity: Severity, _ code: Code, document: Int? = nil, resource: String? = nil,
                path: String = "", line: Int? = nil, message: String) {
        self.severity = severity
        self.code = code
        self.document = document
        self.resource = resource
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String {
        var place = ""
        if let document { place += " document \(document)" }
        if let resource { place += " (\(resource))" }
        if let line { place += " line \(line)" }
        if !path.isEmpty { place += place.isEmpty ? " \(path)" : ", \(path)" }
        return severity.rawValue + ":" + place + (place.isEmpty ? " " : ": ") + message
    }
}

/// A configuration that cannot be used. Holds every error found, not only the first, so an
/// operator can fix them in one pass.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var issues: [ConfigIssue]
    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public init(_ issue: ConfigIssue) { self.issues = [issue] }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// Collects findings while one file is read; shared by the readers of all its documents.
package final class IssueSink {
    package var issues: [ConfigIssue] = []
    package var document: Int? = nil
    package var resource: String? = nil

    package func add(_ sev: ConfigIssue.Severity, _ code: ConfigIssue.Code, _ path: String, _ line: Int?, _ msg: String) {
        issues.append(ConfigIssue(sev, code, document: document, resource: resource, path: path, line: line, message: msg))
    }
    package var hasErrors: Bool { issues.contains { $0.severity == .error } }
}
