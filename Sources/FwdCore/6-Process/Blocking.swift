import Foundation

/// Runs a blocking call (a connect with a timeout, a poll) on a thread of its own. On the cooperative pool it
/// would stall every other task of the process: the pool has one thread per core, two on the machines fwd
/// is tested on.
func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}
