using System.Text;
using Runtime.Model.Tests.Tokenization;
using Runtime.Model.Tokenization;
using Runtime.Training.Data;

namespace Runtime.Training.Tests.Data;

/// <summary>
/// Each accepted row shape, on the real Llama 3 tokenizer. Expected ids are built here from hand-written template text
/// (not through ChatTemplate), and expected labels from the assistant's content encoded on its own plus &lt;|eot_id|&gt;.
/// </summary>
public sealed class RowEncodingTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>
{
    const int Eot = 128009, Bos = 128000, EndOfText = 128001, Ignore = -100;
    const string Header31 = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

    Llama3Tokenizer Tokenizer => fixture.Tokenizer;

    EncodedSample Encode(string json, int maxSeqLength = 4096, ChatTemplate? template = null)
    {
        var row = JsonlRowParser.Parse(Encoding.UTF8.GetBytes(json), "rows.jsonl", 1);
        return new SampleEncoder(Tokenizer, template ?? ChatTemplate.Llama31, maxSeqLength).Encode(row, "rows.jsonl", 1);
    }

    int[] Special(string text) => Tokenizer.Encode(text, allowSpecial: true);
    int[] Plain(string text) => Tokenizer.Encode(text, allowSpecial: false);

    /// <summary>Prompt tokens (not learned), then an answer's content tokens and its eot (learned).</summary>
    static (int[] Ids, int[] Labels) Expect(params (int[] Ids, bool Learned)[] parts)
    {
        var ids = new List<int>();
        var labels = new List<int>();
        foreach (var (partIds, learned) in parts)
        {
            ids.AddRange(partIds);
            labels.AddRange(learned ? partIds : partIds.Select(_ => Ignore));
        }
        return (ids.ToArray(), labels.ToArray());
    }

    [Fact]
    public void Messages_learn_only_each_assistant_content_and_its_eot()
    {
        var sample = Encode("""
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
             {"role": "assistant", "content": "It is 4."}, {"role": "user", "content": " And 3+3? "},
             {"role": "assistant", "content": "Six.\n"}]}
            """);
        var expected = Expect(
            (Special(Header31 + "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), false),
            ([.. Plain("It is 4."), Eot], true),
            (Special("<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), false),
            ([.. Plain("Six."), Eot], true));

        Assert.Equal(expected.Ids, sample.Ids);
        Assert.Equal(expected.Labels, sample.Labels());
        Assert.Equal(Plain("It is 4.").Length + Plain("Six.").Length + 2, sample.TargetCount);
        Assert.False(sample.Truncated);
    }

    [Fact]
    public void Llama3_template_is_selectable_and_has_no_date_header()
    {
        var sample = Encode("""{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}""",
            template: ChatTemplate.Llama3);
        var expected = Expect(
            (Special("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), false),
            ([.. Plain("Hello!"), Eot], true));
        Assert.Equal(expected.Ids, sample.Ids);
        Assert.Equal(expected.Labels, sample.Labels());
    }

    [Fact]
    public void Instruction_with_input_joins_them_with_a_blank_line_under_the_system_prompt()
    {
        var sample = Encode("""{"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour", "system": "You translate."}""");
        var expected = Expect(
            (Special(Header31 + "You translate.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTranslate to French.\n\nGood morning<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), false),
            ([.. Plain("Bonjour"), Eot], true));
        Assert.Equal(expected.Ids, sample.Ids);
        Assert.Equal(expected.Labels, sample.Labels());
    }

    [Fact]
    public void Instruction_with_empty_input_and_no_system_is_the_instruction_alone()
    {
        var sample = Encode("""{"instruction": "Name a colour.", "input": "", "output": "Blue"}""");
        var expected = Expect(
            (Special(Header31 + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), false),
            ([.. Plain("Blue"), Eot], true));
        Assert.Equal(expected.Ids, sample.Ids);
        Assert.Equal(expected.Labels, sample.Labels());
    }

    [Fact]
    public void Instruction_wins_over_a_preformatted_text_column()
    {
        // Alpaca's own file carries both; the structured columns are the ones to train on.
        var sample = Encode("""{"instruction": "Say yes.", "output": "Yes", "text": "### Instruction: Say yes. ### Response: Yes"}""");
        Assert.Equal([.. Plain("Yes"), Eot], sample.Labels().Where(l => l != Ignore));
    }

    [Fact]
    public void Text_is_bos_tokens_end_of_text_all_learned_but_the_first()
    {
        var sample = Encode("""{"text": "The cat sat on the mat."}""");
        int[] ids = [Bos, .. Plain("The cat sat on the mat."), EndOfText];
        Assert.Equal(ids, sample.Ids);
        // The first token is never a target (nothing predicts it); everything after it is.
        Assert.Equal([Ignore, .. ids[1..]], sample.Labels());
    }

    [Fact]
    public void Pre_tokenized_rows_keep_their_ids_and_default_labels_to_the_ids()
    {
        var sample = Encode("""{"input_ids": [128000, 9906, 1917, 128001]}""");
        Assert.Equal([128000, 9906, 1917, 128001], sample.Ids);
        Assert.Equal([Ignore, 9906, 1917, 128001], sample.Labels());

        var masked = Encode("""{"input_ids": [128000, 9906, 1917, 128001], "labels": [-100, -100, 1917, 128001]}""");
        Assert.Equal([Ignore, Ignore, 1917, 128001], masked.Labels());
        Assert.Equal(2, masked.TargetCount);
    }

    [Fact]
    public void Truncation_keeps_the_head()
    {
        const string text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
        int[] full = [Bos, .. Plain(text), EndOfText];
        Assert.True(full.Length > 8);
        var sample = Encode($$"""{"text": "{{text}}"}""", maxSeqLength: 8);
        Assert.True(sample.Truncated);
        Assert.Equal(full[..8], sample.Ids);
        Assert.Equal(7, sample.TargetCount);

        var fits = Encode($$"""{"text": "{{text}}"}""", maxSeqLength: full.Length);
        Assert.False(fits.Truncated);
        Assert.Equal(full, fits.Ids);
    }
}
