#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Asks one question on the controlling terminal, as ssh's own readpassphrase does: the text on the terminal,
/// one line read with echo off unless `echo`, the terminal restored on every path. The terminal is put in
/// non-canonical mode without signals for the duration, so Ctrl-C and Ctrl-D arrive as bytes and cancel; the
/// read polls, so `PromptInterrupt` can withdraw the question (its ssh exited) at any moment.
package struct TerminalPrompter: Sendable {
    package enum Outcome: Equatable, Sendable {
        case answer(String)
        /// Ctrl-C, or Ctrl-D on an empty line, or the terminal closed.
        case cancelled
        /// `PromptInterrupt.interrupt()` was called.
        case withdrawn
        /// No terminal to ask on (no controlling tty, /dev/null…): the caller fails with advice instead.
        case noTerminal(String)
    }

    package let ttyPath: String

    package init(ttyPath: String = "/dev/tty") {
        self.ttyPath = ttyPath
    }

    /// Whether a terminal is there to ask on.
    package var isAvailable: Bool {
        let fd = open(ttyPath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return isatty(fd) == 1
    }

    /// Shows `messages` (ssh's stderr since the previous prompt, e.g. keyboard-interactive instructions) and then
    /// `text`, and reads one line.
    package func ask(_ text: String, messages: String = "", echo: Bool, interrupt: PromptInterrupt? = nil) -> Outcome {
        let fd = open(ttyPath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return .noTerminal("cannot open \(ttyPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var saved = termios()
        guard isatty(fd) == 1, tcgetattr(fd, &saved) == 0 else { return .noTerminal("\(ttyPath) is not a terminal") }

        var raw = saved
        raw.c_lflag &= ~tcflag_t(ECHO | ECHOE | ECHOK | ECHONL | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        // TCSAFLUSH drops anything typed before the question, as readpassphrase does.
        guard tcsetattr(fd, TCSAFLUSH, &raw) == 0 else { return .noTerminal("cannot configure \(ttyPath)") }
        defer { _ = tcsetattr(fd, TCSAFLUSH, &saved) }

        let shown = Self.terminalText(messages) + Self.terminalText(text)
        Self.write(fd, shown.hasPrefix("\r") ? shown : "\r" + shown)
        var line: [UInt8] = []
        defer { for i in line.indices { line[i] = 0 } }
        let outcome = readLine(fd, echo: echo, interrupt: interrupt, into: &line)
        // The user's Enter was not echoed; end the line so what follows starts on its own.
        Self.write(fd, "\n")
        return outcome
    }

    private func readLine(_ fd: Int32, echo: Bool, interrupt: PromptInterrupt?, into line: inout [UInt8]) -> Outcome {
        var byte: UInt8 = 0
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if let interrupt { fds.append(pollfd(fd: interrupt.readEnd, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return .cancelled
            }
            if fds.count > 1 && fds[1].revents != 0 { return .withdrawn }
            if fds[0].revents & Int16(POLLIN) == 0 { return .cancelled } // hang-up or error
            let n = read(fd, &byte, 1)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n == 1 else { return .cancelled }
            switch byte {
            case 0x0d, 0x0a:
                return .answer(String(decoding: line, as: UTF8.self))
            case 0x03:
                return .cancelled
            case 0x04:
                if line.isEmpty { return .cancelled }
            case 0x7f, 0x08:
                guard !line.isEmpty else { continue }
                // Remove one whole UTF-8 character.
                repeat { line.removeLast() } while !line.isEmpty && line.last! & 0xc0 == 0x80
                if echo { Self.write(fd, "\u{8} \u{8}") }
            case 0x15: // Ctrl-U
                if echo { Self.write(fd, String(repeating: "\u{8} \u{8}", count: String(decoding: line, as: UTF8.self).count)) }
                for i in line.indices { line[i] = 0 }
                line.removeAll()
            default:
                guard byte >= 0x20 || byte == 0x09, line.count < AskpassWire.answerLimit else { continue }
                line.append(byte)
                if echo { _ = rawWrite(fd, &byte, 1) }
            }
        }
    }

    /// ssh's stderr ends lines with "\r\n", its prompts with "\n"; the terminal's own output settings (left as
    /// they are) turn "\n" into a new line.
    package static func terminalText(_ text: String) -> String {
        text.replacingOccurrences(of: "\r\n", with: "\n")
    }

    private static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeMutableBytes { rawWrite(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return }
            offset += n
        }
        bytes.removeAll()
    }
}

/// Lets another thread or task withdraw a question `TerminalPrompter.ask` is waiting on.
package final class PromptInterrupt: Sendable {
    let readEnd: Int32
    private let writeEnd: Int32

    package init() {
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    package func interrupt() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }
}

extension TerminalPrompter {
    /// Asks on a thread of its own; cancelling the calling task withdraws the question.
    package func ask(_ prompt: LoginPrompt) async -> Outcome {
        let interrupt = PromptInterrupt()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let thread = Thread {
                    continuation.resume(returning: self.ask(prompt.text, messages: prompt.messages, echo: prompt.echo, interrupt: interrupt))
                }
                thread.name = "fwd-prompt"
                thread.start()
            }
        } onCancel: {
            interrupt.interrupt()
        }
    }
}

// File scope: inside the prompter, `write` names its own helper.
private func rawWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, buffer, count)
}
