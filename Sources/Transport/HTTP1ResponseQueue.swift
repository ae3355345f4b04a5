import DequeModule

/// The responses owed on one HTTP/1.1 connection, in request order. Handlers may answer out of
/// order (and from other threads, after a hop to the connection's queue); a response leaves
/// only when every earlier one has (RFC 9112 §9.3.2). Entries are numbered by a sequence that
/// survives `removeAll`, so a late answer for a dropped request finds nothing to fill.
struct HTTP1ResponseQueue {
    enum Kind { case normal, upgrade }

    struct Entry {
        var response: HTTPResponse?
        var isHead: Bool
        var closeAfter: Bool
        var version: HTTPVersion
        var kind: Kind
    }

    private var entries = Deque<Entry>()
    /// Sequence number of `entries.first`.
    private var firstSeq: UInt64 = 0

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// Adds the next entry; returns its sequence number.
    @discardableResult
    mutating func append(_ entry: Entry) -> UInt64 {
        entries.append(entry)
        return firstSeq &+ UInt64(entries.count - 1)
    }

    /// Records the answer to `seq`. True when it is the next to leave (the caller drains with
    /// `popReady`); a second answer, or one for a dropped entry, is ignored.
    mutating func complete(_ seq: UInt64, _ response: HTTPResponse) -> Bool {
        let index = Int(truncatingIfNeeded: seq &- firstSeq)
        guard seq >= firstSeq, index < entries.count, entries[index].response == nil else { return false }
        entries[index].response = response
        return index == 0
    }

    /// The first entry with its response, if it was answered.
    mutating func popReady() -> (Entry, HTTPResponse)? {
        guard let first = entries.first, let response = first.response else { return nil }
        entries.removeFirst()
        firstSeq &+= 1
        return (first, response)
    }

    /// Makes the last entry close the connection; false when there is none.
    mutating func closeAfterLast() -> Bool {
        guard let last = entries.indices.last else { return false }
        entries[last].closeAfter = true
        return true
    }

    /// Drops every entry (the connection closes after the response just sent).
    mutating func removeAll() {
        firstSeq &+= UInt64(entries.count)
        entries.removeAll()
    }
}
