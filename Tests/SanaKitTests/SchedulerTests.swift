import Foundation
@testable import SanaKit
import XCTest

/// Schedulers against diffusers. Fixtures: `${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_pipeline_refs.py schedulers`
/// (Tests/Fixtures/schedulers/: <case>_config.json as diffusers saves it, cases.json with timesteps and sigmas per
/// step count, <case>_<n>_{model_outputs,samples}.npy for recorded step sequences).
final class SchedulerTests: XCTestCase {
    struct Case: Decodable { let name: String; let steps: Int; let timesteps: [Double]; let sigmas: [Double]; let recorded: String? }

    func cases() throws -> [Case] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("schedulers/cases.json")))
        return try JSONDecoder().decode([Case].self, from: data)
    }

    func scheduler(_ name: String) throws -> any Scheduler {
        let json = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("schedulers/\(name)_config.json")))
        return try SchedulerFactory.make(configJSON: json)
    }

    /// Timesteps and float32 sigmas: tolerance 1e-6 relative (measured: bit-identical, see docs/NUMERICS.md).
    func testTablesMatchDiffusers() throws {
        var worst = 0.0
        for c in try cases() {
            var s = try scheduler(c.name)
            try s.setTimesteps(c.steps)
            XCTAssertEqual(s.timesteps.count, c.timesteps.count, "\(c.name) \(c.steps)")
            XCTAssertEqual(s.sigmas.count, c.sigmas.count, "\(c.name) \(c.steps)")
            for (a, b) in Array(zip(s.timesteps, c.timesteps)) + Array(zip(s.sigmas, c.sigmas)) {
                let rel = abs(Double(a) - b) / max(abs(b), 1e-30)
                worst = max(worst, b == 0 ? abs(Double(a)) : rel)
            }
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(c.name) \(c.steps)")
        }
        print("scheduler tables: worst relative error \(worst)")
    }

    /// Full step sequences fed with diffusers' recorded model outputs: each step's sample within 1e-5 relative
    /// (max|Δ| / max|ref| per step).
    func testStepsMatchDiffusers() throws {
        var worst: Float = 0
        for c in try cases() {
            guard let stem = c.recorded else { continue }
            var s = try scheduler(c.name)
            try s.setTimesteps(c.steps)
            let outputs = try Fixtures.tensor("schedulers/\(stem)_model_outputs.npy")
            let samples = try Fixtures.tensor("schedulers/\(stem)_samples.npy")
            let width = samples.shape[1]
            func row(_ t: Tensor, _ i: Int) -> Tensor {
                Tensor(shape: [1, 4, 3, 5], data: Array(t.data[i * width ..< (i + 1) * width]))
            }
            var sample = row(samples, 0)
            for i in 0 ..< c.steps {
                sample = try s.step(modelOutput: row(outputs, i), index: i, sample: sample)
                let err = relativeMaxError(sample, row(samples, i + 1))
                worst = max(worst, err)
                XCTAssertLessThanOrEqual(err, 1e-5, "\(stem) step \(i)")
            }
        }
        print("scheduler steps: worst relative error \(worst)")
    }

    func testSanaConfigDecodesWithInfinity() throws {
        let s = try scheduler("dpm_sana")
        XCTAssertEqual(s.name, "dpm-solver")
        let euler = try SchedulerFactory.make(
            configJSON: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("schedulers/dpm_sana_config.json"))), override: .euler)
        XCTAssertEqual((euler as? FlowMatchEulerDiscreteScheduler)?.config.shift, 3.0)
    }

    func testUnsupportedValuesAreRejected() throws {
        func make(_ json: String) -> Error? {
            do { _ = try SchedulerFactory.make(configJSON: Data(json.utf8)); return nil } catch { return error }
        }
        let dpm = #""_class_name": "DPMSolverMultistepScheduler", "use_flow_sigmas": true, "prediction_type": "flow_prediction""#
        XCTAssertNil(make("{\(dpm)}"))
        for (extra, key) in [(#""algorithm_type": "sde-dpmsolver++""#, "algorithm_type"), (#""solver_order": 3"#, "solver_order"),
                             (#""use_karras_sigmas": true"#, "use_karras_sigmas"), (#""final_sigmas_type": "sigma_min""#, "final_sigmas_type"),
                             (#""thresholding": true"#, "thresholding"), (#""flow_shift": -1"#, "flow_shift")] {
            let e = make("{\(dpm), \(extra)}")
            XCTAssertTrue("\(e.map { "\($0)" } ?? "no error")".contains(key), "\(extra): \(String(describing: e))")
        }
        XCTAssertTrue("\(make(#"{"_class_name": "DPMSolverMultistepScheduler"}"#)!)".contains("prediction_type"))
        XCTAssertTrue("\(make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": true}"#)!)".contains("use_dynamic_shifting"))
        XCTAssertTrue("\(make(#"{"_class_name": "EulerDiscreteScheduler"}"#)!)".contains("unknown scheduler"))
        XCTAssertTrue("\(make("not json")!)".contains("scheduler config"))
        XCTAssertThrowsError(try SchedulerKind(name: "ddim"))
    }

    func testBadUseIsATypedError() throws {
        var s = try scheduler("dpm_sana")
        XCTAssertThrowsError(try s.setTimesteps(0)) { XCTAssertEqual($0 as? SchedulerError, .invalidSteps(0)) }
        try s.setTimesteps(3)
        let x = Tensor(zeros: [1, 2])
        XCTAssertThrowsError(try s.step(modelOutput: x, index: 1, sample: x)) { XCTAssertEqual($0 as? SchedulerError, .outOfOrder(expected: 0, got: 1)) }
        XCTAssertThrowsError(try s.step(modelOutput: Tensor(zeros: [2]), index: 0, sample: x))
        // So many steps that the first two timesteps coincide: diffusers would index past its tables.
        XCTAssertThrowsError(try s.setTimesteps(2000)) { XCTAssertEqual($0 as? SchedulerError, .duplicateFirstTimestep(steps: 2000)) }
    }
}
