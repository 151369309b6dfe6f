import Foundation

/// Feeds the supervisor what may have changed a master's path: the system's network changes (rtnetlink on Linux,
/// the path monitor on macOS) and resumes from sleep, each as a `PathTrigger` with its reason.
package final class NetworkWatch: Sendable {
    private let monitor: (any NetworkMonitor)?
    private let tasks: [Task<Void, Never>]

    /// `tick` is how often the clocks are compared for a sleep; `monitor` nil watches for resumes only.
    package init(monitor: (any NetworkMonitor)?, tick: Double = 2,
                clock: @escaping @Sendable () -> ResumeDetector.Reading = ResumeDetector.Reading.now,
                onTrigger: @escaping @Sendable (PathTrigger) async -> Void) {
        self.monitor = monitor
        var tasks: [Task<Void, Never>] = []
        if let monitor {
            let changes = monitor.changes()
            tasks.append(Task {
                for await change in changes { await onTrigger(.network(change)) }
            })
        }
        tasks.append(Task {
            var detector = ResumeDetector()
            _ = detector.tick(clock())
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(tick))
                if let asleep = detector.tick(clock()) { await onTrigger(.resumed(asleep: asleep)) }
            }
        })
        self.tasks = tasks
    }

    /// The platform's monitor: rtnetlink on Linux, NWPathMonitor on macOS.
    package static func systemMonitor() throws -> (any NetworkMonitor)? {
        #if os(Linux)
        return try NetlinkMonitor()
        #elseif os(macOS)
        return try PathMonitor()
        #else
        return nil
        #endif
    }

    package func stop() {
        monitor?.stop()
        for task in tasks { task.cancel() }
    }
}
