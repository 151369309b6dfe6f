import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ProcessTableTests {
    /// /proc/net/tcp is longer than one read on a busy machine; a listener past the first 4 KB is still named.
    @Test func namesTheHolderOfAPortAmongManySockets() throws {
        guard FileManager.default.fileExists(atPath: "/proc/net/tcp") else { return }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        var port = 0
        for _ in 0..<80 {
            let listening = try TCPListener.listen(host: "127.0.0.1", port: 0, backlog: 1)
            port = listening.port
            fds.append(listening.socket.release())
        }
        #expect(ProcessTable.holder(ofPort: port)?.hasSuffix("(pid \(getpid()))") == true)
        #expect(ProcessTable.listener(onPort: port)?.pid == getpid())
    }
}
