using Runtime.Model.Config;

namespace Runtime.Model.Tests.Reference;

/// <summary>
/// A deliberately plain Llama forward in double precision, written from shared/reference/llama-hf.md with arrays and
/// loops only (no TorchSharp math), as an independent yardstick for Runtime's model. One sequence at a time; packed
/// segments are handled by the attention loop skipping keys of other segments. Rotary is written per element (pair
/// d with d + head_dim/2) rather than with rotate_half, and GQA by index arithmetic, so a mistake shared with the
/// tensor code is unlikely.
/// </summary>
public sealed class NaiveLlama
{
    readonly LlamaConfig c;
    readonly Func<string, double[]> w;
    readonly double[] invFreq;

    /// <param name="weights">Row-major weights by Hugging Face name ([out, in] for projections).</param>
    public NaiveLlama(LlamaConfig config, Func<string, double[]> weights)
    {
        c = config;
        w = weights;
        invFreq = InvFreq(config.HeadDim, config.RopeTheta, config.RopeScaling);
    }

    /// <summary>llama-hf.md's rotary frequencies, in double, straight from the formula.</summary>
    public static double[] InvFreq(int dim, double theta, RopeScaling? s)
    {
        var result = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++)
        {
            double f = 1.0 / Math.Pow(theta, 2.0 * i / dim);
            if (s is not null)
            {
                double wavelen = 2 * Math.PI / f;
                double lowWl = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
                double highWl = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                double scaled = wavelen > lowWl ? f / s.Factor : f;
                double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                if (!(wavelen < highWl) && !(wavelen > lowWl)) scaled = (1 - smooth) * scaled / s.Factor + smooth * scaled;
                f = scaled;
            }
            result[i] = f;
        }
        return result;
    }

    /// <summary>Logits [seq][vocab] of one sequence; <paramref name="segments"/> null means one segment.</summary>
    public double[][] Forward(int[] tokens, int[] positions, int[]? segments = null)
    {
        int n = tokens.Length, hidden = c.HiddenSize;
        segments ??= new int[n];
        var embed = w("model.embed_tokens.weight");
        var x = new double[n][];
        for (int t = 0; t < n; t++)
        {
            x[t] = new double[hidden];
            Array.Copy(embed, (long)tokens[t] * hidden, x[t], 0, hidden);
        }

        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            string p = $"model.layers.{layer}.";
            var normed = x.Select(row => RmsNorm(row, w(p + "input_layernorm.weight"))).ToArray();
            var attn = Attention(normed, positions, segments, p);
            for (int t = 0; t < n; t++)
                for (int h = 0; h < hidden; h++)
                    x[t][h] += attn[t][h];

            for (int t = 0; t < n; t++)
            {
                var m = RmsNorm(x[t], w(p + "post_attention_layernorm.weight"));
                var gate = MatVec(w(p + "mlp.gate_proj.weight"), m, c.IntermediateSize);
                var up = MatVec(w(p + "mlp.up_proj.weight"), m, c.IntermediateSize);
                var act = new double[c.IntermediateSize];
                for (int i = 0; i < act.Length; i++)
                    act[i] = gate[i] / (1 + Math.Exp(-gate[i])) * up[i];
                var down = MatVec(w(p + "mlp.down_proj.weight"), act, hidden);
                for (int h = 0; h < hidden; h++) x[t][h] += down[h];
            }
        }

        var head = w(c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
        return x.Select(row => MatVec(head, RmsNorm(row, w("model.norm.weight")), c.VocabSize)).ToArray();
    }

    double[][] Attention(double[][] input, int[] positions, int[] segments, string p)
    {
        int n = input.Length, d = c.HeadDim, half = d / 2;
        int groups = c.NumAttentionHeads / c.NumKeyValueHeads;
        var q = input.Select(r => MatVec(w(p + "self_attn.q_proj.weight"), r, c.NumAttentionHeads * d)).ToArray();
        var k = input.Select(r => MatVec(w(p + "self_attn.k_proj.weight"), r, c.NumKeyValueHeads * d)).ToArray();
        var v = input.Select(r => MatVec(w(p + "self_attn.v_proj.weight"), r, c.NumKeyValueHeads * d)).ToArray();
        for (int t = 0; t < n; t++)
        {
            Rotate(q[t], c.NumAttentionHeads, positions[t]);
            Rotate(k[t], c.NumKeyValueHeads, positions[t]);
        }

        var merged = new double[n][];
        for (int t = 0; t < n; t++)
        {
            merged[t] = new double[c.NumAttentionHeads * d];
            for (int head = 0; head < c.NumAttentionHeads; head++)
            {
                int kvHead = head / groups;
                var scores = new List<(int Key, double Score)>();
                for (int j = 0; j <= t; j++)
                {
                    if (segments[j] != segments[t]) continue;
                    double dot = 0;
                    for (int e = 0; e < d; e++) dot += q[t][head * d + e] * k[j][kvHead * d + e];
                    scores.Add((j, dot / Math.Sqrt(d)));
                }
                double max = scores.Max(s => s.Score);
                double total = scores.Sum(s => Math.Exp(s.Score - max));
                foreach (var (j, score) in scores)
                {
                    double prob = Math.Exp(score - max) / total;
                    for (int e = 0; e < d; e++) merged[t][head * d + e] += prob * v[j][kvHead * d + e];
                }
            }
        }
        return merged.Select(r => MatVec(w(p + "self_attn.o_proj.weight"), r, c.HiddenSize)).ToArray();

        void Rotate(double[] vec, int heads, int position)
        {
            for (int head = 0; head < heads; head++)
                for (int i = 0; i < half; i++)
                {
                    double angle = position * invFreq[i], cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double a = vec[head * d + i], b = vec[head * d + i + half];
                    vec[head * d + i] = a * cos - b * sin;
                    vec[head * d + i + half] = b * cos + a * sin;
                }
        }
    }

    double[] RmsNorm(double[] x, double[] weight)
    {
        double meanSquare = x.Sum(e => e * e) / x.Length;
        double scale = 1.0 / Math.Sqrt(meanSquare + c.RmsNormEps);
        return x.Select((e, i) => e * scale * weight[i]).ToArray();
    }

    /// <summary>W [rows, x.Length] row-major times x.</summary>
    static double[] MatVec(double[] weight, double[] x, int rows)
    {
        if (weight.Length != (long)rows * x.Length)
            throw new ArgumentException($"weight of {weight.Length} elements is not [{rows}, {x.Length}]");
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int i = 0; i < x.Length; i++) sum += weight[(long)r * x.Length + i] * x[i];
            y[r] = sum;
        }
        return y;
    }
}
