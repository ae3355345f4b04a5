import Dispatch
import Synchronization
import Testing
@testable import Transport

@Suite struct EventLoopGroupTests {
    @Test func connectionQueuesTargetLoopsRoundRobin() {
        let group = EventLoopGroup(loopCount: 3)
        #expect(group.count == 3)
        let key = DispatchSpecificKey<Int>()
        for loop in group.loops { loop.queue.setSpecific(key: key, value: loop.index) }
        var seen: [Int] = []
        for _ in 0..<6 {
            let (loop, queue) = group.makeConnectionQueue(label: "t")
            // A block on the connection queue runs inside its loop's queue.
            let observed = queue.sync { DispatchQueue.getSpecific(key: key) }
            #expect(observed == loop.index)
            seen.append(loop.index)
        }
        #expect(seen.sorted() == [0, 0, 1, 1, 2, 2])
        #expect(Set(seen.prefix(3)) == [0, 1, 2])
    }

    @Test func connectionsOnOneLoopAreSerialized() {
        let group = EventLoopGroup(loopCount: 1)
        let queues = (0..<4).map { _ in group.makeConnectionQueue(label: "t").1 }
        let inside = Atomic<Int>(0)
        let overlap = Atomic<Bool>(false)
        let done = DispatchGroup()
        for q in queues {
            for _ in 0..<50 {
                q.async(group: done) {
                    if inside.wrappingAdd(1, ordering: .relaxed).newValue > 1 { overlap.store(true, ordering: .relaxed) }
                    for _ in 0..<100 { _ = inside.load(ordering: .relaxed) }
                    inside.wrappingSubtract(1, ordering: .relaxed)
                }
            }
        }
        done.wait()
        #expect(overlap.load(ordering: .relaxed) == false)
    }

    @Test func queueTokenKnowsTheCurrentQueue() {
        let q = DispatchQueue(label: "t")
        let token = QueueToken.of(q)
        #expect(QueueToken.of(q) === token)
        #expect(!token.isCurrent)
        #expect(q.sync { token.isCurrent })
    }
}
