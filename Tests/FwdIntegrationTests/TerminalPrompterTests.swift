import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// The terminal prompter on a real pty, typed at as a person would.
@Suite("Terminal prompter", .serialized)
struct TerminalPrompterTests {
    private func password(messages: String = "") -> LoginPrompt {
        LoginPrompt(id: 1, text: "alice@a.lab's password: ", hint: .answer, messages: messages)
    }

    @Test("a password is read with echo off: typed characters never appear, and the terminal is restored")
    func echoOff() async throws {
        let pty = try PseudoTerminal()
        let before = pty.settings
        let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(password()) }
        #expect(pty.waitFor("alice@a.lab's password: "))
        pty.type("hunter2-secret\r")
        #expect(await asking.value == .answer("hunter2-secret"))
        #expect(!pty.screen.contains("hunter2"))
        #expect(pty.settings == before)
    }

    @Test("ssh's yes/no question is read with echo on")
    func echoOn() async throws {
        let pty = try PseudoTerminal()
        let question = LoginPrompt(id: 2, text: "ED25519 key fingerprint is SHA256:abc.\nAre you sure you want to continue connecting (yes/no/[fingerprint])? ",
                                   hint: .answer)
        #expect(question.echo)
        let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(question) }
        #expect(pty.waitFor("(yes/no/[fingerprint])? "))
        // Each line of ssh's text starts at the left margin.
        #expect(pty.screen.contains("SHA256:abc.\r\nAre you sure"))
        pty.type("yes\r")
        #expect(await asking.value == .answer("yes"))
        #expect(pty.screen.contains("(yes/no/[fingerprint])? yes"))
    }

    @Test("Ctrl-C cancels and restores the terminal")
    func controlC() async throws {
        let pty = try PseudoTerminal()
        let before = pty.settings
        let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(password()) }
        #expect(pty.waitFor("password: "))
        pty.type("half-typ\u{3}")
        #expect(await asking.value == .cancelled)
        #expect(pty.settings == before)
        #expect(!pty.screen.contains("half"))
    }

    @Test("Ctrl-D on an empty line cancels")
    func controlD() async throws {
        let pty = try PseudoTerminal()
        let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(password()) }
        #expect(pty.waitFor("password: "))
        pty.type("\u{4}")
        #expect(await asking.value == .cancelled)
    }

    @Test("a withdrawn prompt stops waiting at once and restores the terminal")
    func withdrawn() async throws {
        let pty = try PseudoTerminal()
        let before = pty.settings
        let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(password()) }
        #expect(pty.waitFor("password: "))
        pty.type("abc")
        let start = Date()
        asking.cancel()
        #expect(await asking.value == .withdrawn)
        #expect(Date().timeIntervalSince(start) < 0.5)
        #expect(pty.settings == before)
    }

    @Test("server messages come before the prompt; backspace and Ctrl-U edit the line")
    func messagesAndEditing() async throws {
        let pty = try PseudoTerminal()
        let prompt = LoginPrompt(id: 3, text: "(alice@a.lab) Verification code: ", hint: .answer,
                                 messages: "That code was not accepted.\r\n")
        let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(prompt) }
        #expect(pty.waitFor("Verification code: "))
        #expect(pty.screen.contains("That code was not accepted.\r\n"))
        let screen = pty.screen
        #expect(screen.range(of: "not accepted")!.lowerBound < screen.range(of: "Verification code")!.lowerBound)
        pty.type("999\u{15}12x\u{7f}34\r")
        #expect(await asking.value == .answer("1234"))
    }

    @Test("without a terminal there is no prompt")
    func noTerminal() async throws {
        let outcome = TerminalPrompter(ttyPath: "/dev/null").ask("password: ", echo: false)
        guard case .noTerminal = outcome else {
            Issue.record("expected noTerminal, got \(outcome)")
            return
        }
        #expect(!TerminalPrompter(ttyPath: "/dev/null").isAvailable)
        let pty = try PseudoTerminal()
        #expect(TerminalPrompter(ttyPath: pty.path).isAvailable)
    }
}
