using System.CommandLine;
using System.Diagnostics;
using Runtime.Model.Llama;
using Runtime.Model.Tokenization;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt generate`: continues a prompt with the model's KV-cache generator. With --chat the prompt is the user turn of a
/// conversation rendered with the model's chat template (Llama 3.1's unless the folder says otherwise) and the
/// assistant's reply is printed; without it the prompt is plain text after BOS, as transformers' tokenizer encodes it.
/// </summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var adapter = ModelFolder.AdapterOption();
        var prompt = new Option<string>("--prompt") { Description = "Prompt text (the user message with --chat)", Required = true };
        var chat = new Option<bool>("--chat") { Description = "Render the prompt with the chat template and print the assistant's reply" };
        var system = new Option<string?>("--system") { Description = "System message (with --chat)" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Upper bound on generated tokens", DefaultValueFactory = _ => 128 };
        var greedy = new Option<bool>("--greedy") { Description = "Always take the most likely token (otherwise sample)" };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature (Llama's generation_config: 0.6)", DefaultValueFactory = _ => 0.6 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling mass (Llama's generation_config: 0.9)", DefaultValueFactory = _ => 0.9 };
        var seed = new Option<long>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "fp32 | bf16 compute", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file when the model folder has none" };
        var template = new Option<string?>("--template") { Description = "Chat template: llama3.1 | llama3 (default: detected from the folder)" };

        var command = new Command("generate", "Generate text from a prompt with the model's KV cache");
        foreach (var o in new Option[] { model, adapter, prompt, chat, system, maxNew, greedy, temperature, topP, seed, dtype, tokenizer, template })
            command.Options.Add(o);
        CommandAction.Set(command, (parse, stdout) =>
        {
            var folder = parse.GetValue(model)!;
            if (parse.GetValue(maxNew) < 0) throw new UsageException("--max-new-tokens must not be negative");
            var tok = ModelFolder.LoadTokenizer(folder, parse.GetValue(tokenizer));
            using var slice = ModelFolder.LoadForInference(folder, ModelFolder.ParseDType(parse.GetValue(dtype)!), parse.GetValue(adapter));

            int[] promptIds;
            if (parse.GetValue(chat))
            {
                var name = parse.GetValue(template);
                var chatTemplate = name is null ? ChatTemplate.FromModelFolder(folder) : ChatTemplate.Parse(name);
                var messages = new List<ChatMessage>();
                if (parse.GetValue(system) is { } s) messages.Add(new ChatMessage("system", s));
                messages.Add(new ChatMessage("user", parse.GetValue(prompt)!));
                promptIds = chatTemplate.RenderTokens(tok, messages, addGenerationPrompt: true).Ids;
            }
            else
            {
                if (parse.GetValue(system) is not null) throw new UsageException("--system needs --chat");
                promptIds = [tok.BeginOfText, .. tok.Encode(parse.GetValue(prompt)!, allowSpecial: false)];
            }

            var options = new GenerationOptions
            {
                MaxNewTokens = parse.GetValue(maxNew),
                Temperature = parse.GetValue(greedy) ? 0 : parse.GetValue(temperature),
                TopP = parse.GetValue(greedy) ? 1.0 : parse.GetValue(topP),
                Seed = parse.GetValue(seed),
            };
            if (!(options.TopP > 0 && options.TopP <= 1)) throw new UsageException("--top-p must be in (0, 1]");
            var clock = Stopwatch.StartNew();
            var generated = new LlamaGenerator(slice).Generate(promptIds, options);
            clock.Stop();

            // The stop token ends the reply; it is not part of the text.
            var text = generated.Where(id => !slice.Config.EosTokenIds.Contains(id)).ToArray();
            stdout.WriteLine(tok.Decode(text));
            parse.InvocationConfiguration.Error.WriteLine(
                $"[{generated.Length} tokens in {clock.Elapsed.TotalSeconds:F2} s, prompt {promptIds.Length} tokens]");
            return CommandAction.ExitOk;
        });
        return command;
    }
}
