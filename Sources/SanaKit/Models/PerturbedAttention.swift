// Perturbed-attention guidance's model side: diffusers/models/attention_processor.py PAGCFGSanaLinearAttnProcessor2_0
// and PAGIdentitySanaLinearAttnProcessor2_0, which SanaPAGPipeline (pipelines/pag/pipeline_pag_sana.py) installs on
// the self-attention (attn1) of the applied blocks. They split the batch: the last chunk (the perturbed copy of the
// conditional element) gets the identity attention, every other element the usual ReLU linear attention.
//
// Identity attention: the output is to_out(to_v(h)) for the block's modulated input h (no q, no k, no qk-norm).
// Known difference: those processors also skip norm_q/norm_k on the unperturbed elements, so on a qk-norm model
// (Sana 1.5) diffusers' PAG changes the guided elements too; we keep the model's own attention there (the
// reference's behavior is a side effect of the processor not handling qk_norm, see docs/NUMERICS.md "End to end").

/// Which batch elements run identity self-attention, and in which blocks (transformer_blocks.i.attn1).
public struct PerturbedAttention: Sendable, Equatable {
    /// Batch elements whose self-attention is replaced by the identity.
    public var batches: Range<Int>
    /// Block indices where the replacement applies (SanaPAGPipeline's pag_applied_layers "transformer_blocks.i").
    public var blocks: Set<Int>

    public init(batches: Range<Int>, blocks: Set<Int>) {
        self.batches = batches
        self.blocks = blocks
    }

    /// The identity-attention batch elements of block `index` (empty where PAG does not apply).
    func batches(inBlock index: Int) -> Range<Int> {
        blocks.contains(index) ? batches : 0 ..< 0
    }
}
