import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Notices that the machine slept: a clock that runs through suspend (CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC
/// on macOS) gained more over a tick than one that stops during it (CLOCK_MONOTONIC on Linux, CLOCK_UPTIME_RAW on
/// macOS). Needs no system service, and a quick wake on the same network, which brings no link event, is seen too.
package struct ResumeDetector: Sendable {
    /// Seconds of difference between the clocks over one tick that count as a sleep.
    package var threshold: Double
    private var last: Reading?

    package struct Reading: Sendable, Equatable {
        /// Seconds on the clock that runs during suspend.
        package var withSleep: Double
        /// Seconds on the clock that stops during suspend.
        package var awake: Double

        package init(withSleep: Double, awake: Double) {
            self.withSleep = withSleep
            self.awake = awake
        }

        package static func now() -> Reading {
            #if os(Linux)
            Reading(withSleep: seconds(CLOCK_BOOTTIME), awake: seconds(CLOCK_MONOTONIC))
            #else
            Reading(withSleep: seconds(CLOCK_MONOTONIC), awake: seconds(CLOCK_UPTIME_RAW))
            #endif
        }

        private static func seconds(_ clock: clockid_t) -> Double {
            var ts = timespec()
            clock_gettime(clock, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
    }

    package init(threshold: Double = 2) { self.threshold = threshold }

    /// Feeds one reading; returns how long the machine slept since the previous one, when it did.
    package mutating func tick(_ reading: Reading) -> Double? {
        defer { last = reading }
        guard let last else { return nil }
        let asleep = (reading.withSleep - last.withSleep) - (reading.awake - last.awake)
        return asleep >= threshold ? asleep : nil
    }
}
