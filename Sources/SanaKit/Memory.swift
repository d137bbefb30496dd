// Resident-memory measurement (for the `generate` summary and benchmarks) and the size syntax of --memory-budget.
import Foundation

public enum MemoryError: Error, CustomStringConvertible, Equatable {
    case badSize(String)

    public var description: String {
        switch self {
        case let .badSize(s):
            return "bad size '\(s)': expected a positive number with an optional unit, e.g. 800MB, 2GiB, 1.5G, 512M"
        }
    }
}

public enum Memory {
    /// (current, peak) resident set size of this process in bytes: VmRSS and VmHWM from /proc/self/status on Linux;
    /// elsewhere getrusage's ru_maxrss for both (current is then unknown and reported as the peak).
    public static func residentBytes() -> (current: Int, peak: Int) {
        #if os(Linux)
            if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
                var current: Int?, peak: Int?
                for line in status.split(separator: "\n") {
                    // "VmHWM:    123456 kB"
                    let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                    guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
                    if parts[0] == "VmRSS:" { current = kb * 1024 }
                    if parts[0] == "VmHWM:" { peak = kb * 1024 }
                }
                if let current, let peak { return (current, peak) }
            }
        #endif
        var usage = rusage()
        #if os(Linux)
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let peak = Int(usage.ru_maxrss) * 1024  // kilobytes on Linux
        #else
            getrusage(RUSAGE_SELF, &usage)
            let peak = Int(usage.ru_maxrss)  // bytes on Darwin
        #endif
        return (peak, peak)
    }

    /// Peak resident set size in bytes.
    public static var peakResidentBytes: Int { residentBytes().peak }

    /// Parses "800MB", "2GiB", "1.5G", "512m", "1048576" (bytes). Decimal units (kB, MB, GB, TB) are powers of 1000,
    /// binary ones (KiB, MiB, GiB, TiB) and the bare letters K, M, G, T powers of 1024, as in `free -h` / GNU sizes.
    public static func parseSize(_ text: String) throws -> Int {
        let s = text.trimmingCharacters(in: .whitespaces)
        let numberEnd = s.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) ?? s.endIndex
        let number = String(s[..<numberEnd])
        let unit = s[numberEnd...].trimmingCharacters(in: .whitespaces).lowercased()
        let scale: Double
        switch unit {
        case "", "b": scale = 1
        case "kb": scale = 1e3
        case "mb": scale = 1e6
        case "gb": scale = 1e9
        case "tb": scale = 1e12
        case "k", "kib": scale = 1024
        case "m", "mib": scale = 1024 * 1024
        case "g", "gib": scale = 1024 * 1024 * 1024
        case "t", "tib": scale = 1024 * 1024 * 1024 * 1024
        default: throw MemoryError.badSize(text)
        }
        guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1, let value = Double(number), value > 0 else {
            throw MemoryError.badSize(text)
        }
        let bytes = (value * scale).rounded()
        guard bytes >= 1, bytes < Double(Int.max) else { throw MemoryError.badSize(text) }
        return Int(bytes)
    }

    /// "1.23 GiB"-style text for reports.
    public static func format(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes), i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(bytes) B" : String(format: "%.2f %@", v, units[i])
    }
}
