"""The board's layout and wiring (gradio Blocks). Logic lives in handlers.py; strings in labels.json."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls

import gradio as gr  # noqa: E402

from tunewise.ui import chat, configure, handlers, jobs, live  # noqa: E402
from tunewise.ui.guard import HostCheck, allowed_hosts, board_run, refusal  # noqa: E402
from tunewise.ui.i18n import LANGS, lang_code, param_label, t  # noqa: E402

CSS = """
.tw-preview pre{white-space:pre-wrap;font-size:.85em;background:var(--background-fill-secondary);padding:.5em;border-radius:6px}
mark.tw-sup{background:#b7f0b1;color:#113d0f;padding:0 1px;border-radius:2px}
.tw-ex-head{font-weight:600;margin-top:.6em}
"""


def gguf_types() -> list[str]:
    try:
        from tunewise.export.gguf import GGUF_TYPES
    except ImportError:
        GGUF_TYPES = ("f16", "q8_0", "q4_k_m")
    return ["none", *GGUF_TYPES]


def _param_component(key: str, kind: str, lang: str):
    label, info = param_label(key, lang), handlers.param_info(key, lang, None)
    eid = "tw-p-" + key.replace(".", "-")
    value = configure.form_default(key)
    if kind == "choice":
        return gr.Dropdown(configure.choices_for(key), value=value, label=label, info=info, elem_id=eid)
    if kind == "auto_bool":
        return gr.Dropdown(["auto", "true", "false"], value=str(value).lower(), label=label, info=info, elem_id=eid)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), label=label, info=info, elem_id=eid)
    if kind in ("int", "int_or_none"):
        return gr.Number(value=value, precision=0, label=label, info=info, elem_id=eid)
    return gr.Number(value=None if key == "train.learning_rate" else value, label=label, info=info, elem_id=eid)


def build(root: str | Path = "runs", lang: str = "en") -> gr.Blocks:
    root = str(Path(root).resolve())
    Path(root).mkdir(parents=True, exist_ok=True)
    L = lambda k: t(k, lang)  # noqa: E731  initial language
    i18n: list[tuple[object, str, str]] = []   # (component, label key, attribute) switched by the language radio

    def reg(comp, key, attr="label"):
        i18n.append((comp, key, attr))
        return comp

    with gr.Blocks(title="tunewise board", analytics_enabled=False) as demo:
        lang_state = gr.State(lang)
        advice_state = gr.State(None)
        checked_state = gr.State(None)    # path of the last checked config YAML
        with gr.Row():
            title = reg(gr.Markdown(L("title")), "title", "value")
            lang_radio = gr.Radio(list(LANGS), value="中文" if lang == "zh" else "English", label=L("lang"),
                                  elem_id="tw-lang", scale=0, min_width=220)
        with gr.Row():
            runs = live.list_runs(root)
            run_dd = reg(gr.Dropdown(runs, value=runs[0] if runs else None, label=L("current_run"),
                                     allow_custom_value=True, elem_id="tw-run", scale=4), "current_run")
            refresh_btn = reg(gr.Button(L("refresh"), scale=0, elem_id="tw-refresh"), "refresh", "value")

        with gr.Tabs():
            # ---------------------------------------------------------------- 1 configure
            with reg(gr.Tab(L("tab_configure"), id="configure", elem_id="tw-tab-configure"), "tab_configure"):
                with gr.Row():
                    name_tb = reg(gr.Textbox("my-first-run", label=L("run_name"), info=L("run_name_info"),
                                             elem_id="tw-run-name"), "run_name")
                    reg(name_tb, "run_name_info", "info")
                    model_dd = reg(gr.Dropdown(configure.MODEL_ALIASES, value="tiny-llama", allow_custom_value=True,
                                               label=L("model"), info=L("model_info"), elem_id="tw-model", scale=2), "model")
                    reg(model_dd, "model_info", "info")
                with gr.Row():
                    data_tb = reg(gr.Textbox("", label=L("data_path"), info=L("data_path_info"), elem_id="tw-data-path",
                                             scale=3), "data_path")
                    reg(data_tb, "data_path_info", "info")
                    upload = reg(gr.File(label=L("upload"), file_count="single", elem_id="tw-upload", scale=1,
                                         height=120), "upload")
                    demo_btn = reg(gr.Button(L("demo_data"), elem_id="tw-demo-data", scale=1), "demo_data", "value")
                with reg(gr.Accordion(L("params"), open=True), "params"):
                    comps = []
                    with gr.Row(equal_height=False):
                        cols = [gr.Column(min_width=260) for _ in range(3)]
                    for i, (key, kind) in enumerate(configure.FORM_PARAMS):
                        with cols[i % 3]:
                            comps.append(_param_component(key, kind, lang))
                    more_tb = reg(gr.Textbox("", lines=3, label=L("more"), info=L("more_info"), elem_id="tw-more"), "more")
                    reg(more_tb, "more_info", "info")
                with gr.Row():
                    check_btn = reg(gr.Button(L("check"), variant="primary", elem_id="tw-check"), "check", "value")
                    apply_btn = reg(gr.Button(L("apply_recs"), elem_id="tw-apply"), "apply_recs", "value")
                    preview_btn = reg(gr.Button(L("preview"), elem_id="tw-preview-btn"), "preview", "value")
                check_md = gr.Markdown(elem_id="tw-check-result")
                advisor_md = gr.Markdown(handlers.advisor_markdown(None, lang) if not handlers.knowledge.advise_available()
                                         else "", elem_id="tw-advisor")
                with gr.Row():
                    yaml_code = reg(gr.Code(language="yaml", label=L("yaml"), elem_id="tw-yaml", scale=3), "yaml")
                    yaml_file = reg(gr.File(label=L("yaml_file"), elem_id="tw-yaml-file", interactive=False, scale=1),
                                    "yaml_file")
                preview_html = gr.HTML(elem_id="tw-preview")
                with gr.Row():
                    report_tb = reg(gr.Textbox(label=L("data_report"), lines=8, elem_id="tw-data-report"), "data_report")
                    lengths_img = reg(gr.Image(label=L("lengths"), type="filepath", elem_id="tw-lengths",
                                               interactive=False), "lengths")
                with reg(gr.Accordion(L("all_params"), open=False), "all_params"):
                    all_df = gr.Dataframe(handlers.all_params_table(lang), wrap=True, elem_id="tw-all-params",
                                          interactive=False)

            # ---------------------------------------------------------------- 2 train
            with reg(gr.Tab(L("tab_train"), id="train", elem_id="tw-tab-train"), "tab_train"):
                with gr.Row():
                    start_btn = reg(gr.Button(L("start"), variant="primary", elem_id="tw-start"), "start", "value")
                    stop_btn = reg(gr.Button(L("stop"), variant="stop", elem_id="tw-stop"), "stop", "value")
                    resume_btn = reg(gr.Button(L("resume"), elem_id="tw-resume"), "resume", "value")
                    overwrite_cb = reg(gr.Checkbox(False, label=L("overwrite"), elem_id="tw-overwrite"), "overwrite")
                train_msg = gr.Markdown(elem_id="tw-train-msg")
                status_md = gr.Markdown(elem_id="tw-status")
                with gr.Row():
                    # every value carries both series (see live.with_all_series): the plot's colours are
                    # fixed from its first value, and a series it did not see then is never drawn.
                    # The title sits on the legend: a shown label pushes the legend's entries out of the box.
                    loss_plot = reg(gr.LinePlot(live.with_all_series(live.loss_frame([])), x="step", y="value",
                                                color="series", color_map=live.LOSS_COLORS,
                                                label=L("loss_plot"), show_label=False, color_title=L("loss_plot"),
                                                height=300, elem_id="tw-loss-plot", scale=2), "loss_plot")
                    reg(loss_plot, "loss_plot", "color_title")
                    lr_plot = reg(gr.LinePlot(live.lr_frame([]), x="step", y="lr", label=L("lr_plot"), show_label=True,
                                              height=300, elem_id="tw-lr-plot", scale=1), "lr_plot")
                # whether the answers stop and say what the data teaches (the generation check, train/behaviour.py)
                quality_plot = reg(gr.LinePlot(live.with_all_series(live.quality_frame([]), live.QUALITY_COLORS), x="step",
                                               y="value", color="series", color_map=live.QUALITY_COLORS, y_lim=[0, 1],
                                               label=L("quality_plot"), show_label=False, color_title=L("quality_plot"),
                                               height=240, elem_id="tw-quality-plot"), "quality_plot")
                reg(quality_plot, "quality_plot", "color_title")
                verdict_md = gr.Markdown(elem_id="tw-verdict")
                log_tb = reg(gr.Textbox(label=L("log"), lines=10, max_lines=10, elem_id="tw-log", autoscroll=True), "log")
                with reg(gr.Accordion(L("compare"), open=False), "compare"):
                    cmp_cg = reg(gr.CheckboxGroup(runs, label=L("compare_runs"), elem_id="tw-compare-runs"), "compare_runs")
                    cmp_btn = reg(gr.Button(L("compare_btn"), elem_id="tw-compare-btn"), "compare_btn", "value")
                    cmp_plot = gr.LinePlot(live.compare_frame([]), x="step", y="value", color="series", height=300,
                                           elem_id="tw-compare-plot")

            # ---------------------------------------------------------------- 3 evaluate and chat
            with reg(gr.Tab(L("tab_eval"), id="eval", elem_id="tw-tab-eval"), "tab_eval"):
                reg(gr.Markdown(L("eval_head")), "eval_head", "value")
                with gr.Row():
                    samples_nb = reg(gr.Number(20, precision=0, label=L("eval_samples"), elem_id="tw-eval-samples"),
                                     "eval_samples")
                    forget_cb = reg(gr.Checkbox(False, label=L("eval_forgetting"), elem_id="tw-eval-forgetting"),
                                    "eval_forgetting")
                    eval_btn = reg(gr.Button(L("eval_btn"), elem_id="tw-eval-btn"), "eval_btn", "value")
                eval_md = gr.Markdown(elem_id="tw-eval-status")
                eval_df = reg(gr.Dataframe(label=L("eval_table"), elem_id="tw-eval-table", interactive=False),
                              "eval_table")
                forget_md = gr.Markdown(elem_id="tw-forgetting")
                reg(gr.Markdown(L("chat_head")), "chat_head", "value")
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = reg(gr.Chatbot(label=L("chatbot"), height=320, elem_id="tw-chatbot"), "chatbot")
                        with gr.Row():
                            msg_tb = reg(gr.Textbox(label=L("chat_input"), elem_id="tw-chat-input", scale=4), "chat_input")
                            send_btn = reg(gr.Button(L("send"), variant="primary", elem_id="tw-send", scale=1), "send", "value")
                            clear_btn = reg(gr.Button(L("clear"), elem_id="tw-clear", scale=1), "clear", "value")
                    with gr.Column(scale=2):
                        which_radio = reg(gr.Radio(["tuned", "base"], value="tuned", label=L("which_model"),
                                                   elem_id="tw-which"), "which_model")
                        system_tb = reg(gr.Textbox("", label=L("system"), elem_id="tw-system"), "system")
                        temp_sl = reg(gr.Slider(0, 2, value=0.7, step=0.05, label=L("temperature"), elem_id="tw-temp"), "temperature")
                        topk_sl = reg(gr.Slider(0, 200, value=50, step=1, label=L("top_k"), elem_id="tw-topk"), "top_k")
                        topp_sl = reg(gr.Slider(0.05, 1, value=0.9, step=0.05, label=L("top_p"), elem_id="tw-topp"), "top_p")
                        rep_sl = reg(gr.Slider(1, 2, value=1.1, step=0.05, label=L("repetition_penalty"), elem_id="tw-rep"),
                                     "repetition_penalty")
                        maxnew_sl = reg(gr.Slider(8, 512, value=128, step=8, label=L("max_new_tokens"), elem_id="tw-maxnew"),
                                        "max_new_tokens")

            # ---------------------------------------------------------------- 4 export
            with reg(gr.Tab(L("tab_export"), id="export", elem_id="tw-tab-export"), "tab_export"):
                reg(gr.Markdown(L("export_head")), "export_head", "value")
                with gr.Row():
                    gguf_dd = reg(gr.Dropdown(gguf_types(), value="f16", label=L("gguf"), elem_id="tw-gguf"), "gguf")
                    ollama_cb = reg(gr.Checkbox(True, label=L("ollama"), elem_id="tw-ollama"), "ollama")
                    export_btn = reg(gr.Button(L("export_btn"), variant="primary", elem_id="tw-export-btn"), "export_btn", "value")
                export_md = gr.Markdown(elem_id="tw-export-result")
                export_log = reg(gr.Textbox(label=L("export_log"), lines=8, elem_id="tw-export-log"), "export_log")

        timer = gr.Timer(1.0)

        # ------------------------------------------------------------------------ wiring
        form_inputs = [lang_state, name_tb, model_dd, data_tb, more_tb, *comps]

        switched: dict[int, tuple[object, dict[str, str]]] = {}  # one update per component, all its texts
        for comp, key, attr in i18n:
            switched.setdefault(id(comp), (comp, {}))[1][attr] = key

        def on_lang(choice, advice):
            code = lang_code(choice)
            ups = [gr.update(**{attr: t(key, code) for attr, key in attrs.items()}) for _, attrs in switched.values()]
            return [code, *ups, *handlers.param_updates(code, advice), handlers.all_params_table(code, None, advice),
                    handlers.advisor_markdown(advice, code) if advice or not handlers.knowledge.advise_available() else ""]

        lang_radio.change(on_lang, [lang_radio, advice_state],
                          [lang_state, *[c for c, _ in switched.values()], *comps, all_df, advisor_md])

        def on_refresh(current):
            rs = live.list_runs(root)
            return gr.update(choices=rs, value=current if current in rs else (rs[0] if rs else None)), gr.update(choices=rs)

        refresh_btn.click(on_refresh, [run_dd], [run_dd, cmp_cg])
        upload.upload(lambda f: str(configure.store_upload(f, root)) if f else gr.update(), [upload], [data_tb])
        demo_btn.click(lambda: str(configure.write_demo_data(root)), None, [data_tb])

        def on_check(lang_, name, model, data, more, *values):
            r = handlers.check(root, lang_, name, model, data, more, values)
            if not r["ok"]:
                return [r["message"], gr.update(), gr.update(), None, None, gr.update(), None,
                        *[gr.update() for _ in comps]]
            return [r["message"], handlers.advisor_markdown(r["advice"], lang_), r["yaml"], str(r["path"]), r["advice"],
                    handlers.all_params_table(lang_, r["cfg"], r["advice"]), str(r["path"]),
                    *handlers.param_updates(lang_, r["advice"])]

        check_btn.click(on_check, form_inputs,
                        [check_md, advisor_md, yaml_code, yaml_file, advice_state, all_df, checked_state, *comps])

        def on_apply(advice, *values):
            recs = (handlers.knowledge.pick(advice, "en") or {}).get("recommendations") or {}
            out = []
            for key, v in zip(handlers.PARAM_KEYS, values):
                out.append(recs[key] if key in recs else v)
            return out

        apply_btn.click(on_apply, [advice_state, *comps], comps)

        def on_preview(lang_, name, model, data, more, *values):
            try:
                cfg = configure.build_config(handlers.form_dict(root, name, model, data, values), more)
                p = configure.preview(cfg)
            except Exception as e:
                return handlers.error_text(e), "", None
            png = Path(root) / ".board" / f"{cfg.run.name}-lengths.png"
            from tunewise.data.report import write_length_histogram

            if p["lengths"]:
                write_length_histogram(p["lengths"], png, cfg.data.max_length)
            return configure.preview_html(p, lang_), p["summary"], str(png) if p["lengths"] else None

        preview_btn.click(on_preview, form_inputs, [preview_html, report_tb, lengths_img])

        def on_start(lang_, name, model, data, more, overwrite, *values):
            r = handlers.check(root, lang_, name, model, data, more, values)
            if not r["ok"]:
                return r["message"], gr.update(), r.get("advice")
            if not r["cfg"].data.datasets:
                return r["message"], gr.update(), r["advice"]
            msg, run = handlers.start_training(root, lang_, r["path"], r["cfg"], overwrite)
            lint = handlers.lint_markdown(handlers.knowledge.lint_items(handlers.knowledge.pick(r["advice"], lang_)), lang_)
            msg = msg + ("\n\n" + lint if lint else "")
            if run is None:
                return msg, gr.update(), r["advice"]
            rs = live.list_runs(root)
            return msg, gr.update(choices=sorted(set(rs) | {run}), value=run), r["advice"]

        start_btn.click(on_start, [lang_state, name_tb, model_dd, data_tb, more_tb, overwrite_cb, *comps],
                        [train_msg, run_dd, advice_state], api_name="start")
        # Named endpoints (api_name) for the actions on a run: the HTTP surface the containment test drives.
        stop_btn.click(partial(handlers.stop_training, root), [run_dd, lang_state], [train_msg], api_name="stop")
        resume_btn.click(partial(handlers.resume_training, root), [run_dd, lang_state], [train_msg], api_name="resume")

        def on_compare(selected):
            df = live.compare_frame([r for r in (board_run(root, x) for x in selected or []) if r])
            palette = ["#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#9d755d", "#bab0ac"]
            cmap = {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(df["series"])))}
            return gr.update(value=live.with_all_series(df, cmap), color_map=cmap)

        cmp_btn.click(on_compare, [cmp_cg], [cmp_plot], api_name="compare")

        def on_tick(run, lang_, seen):
            s = handlers.train_status(root, run, lang_)
            sig = (run, len(s["rows"]), s.get("state"))
            plots = ([live.with_all_series(live.loss_frame(s["rows"])), live.lr_frame(s["rows"]),
                      live.with_all_series(live.quality_frame(s["rows"]), live.QUALITY_COLORS)] if sig != seen
                     else [gr.skip(), gr.skip(), gr.skip()])
            ev_msg, ev_df, fg = handlers.eval_status(root, run, lang_)
            ex_md, ex_log = handlers.export_status(root, run, lang_)
            return [s["status"], *plots, s["verdict"], s["log"], sig, ev_msg, ev_df, fg, ex_md, ex_log]

        seen_state = gr.State(None)
        timer.tick(on_tick, [run_dd, lang_state, seen_state],
                   [status_md, loss_plot, lr_plot, quality_plot, verdict_md, log_tb, seen_state, eval_md, eval_df, forget_md,
                    export_md, export_log], show_progress="hidden", api_name="status")

        eval_btn.click(partial(handlers.start_eval, root), [run_dd, lang_state, samples_nb, forget_cb], [eval_md],
                       api_name="eval")
        export_btn.click(partial(handlers.start_export, root), [run_dd, lang_state, gguf_dd, ollama_cb], [export_md],
                         api_name="export")

        def on_send(message, history, run, which, system, temp, topk, topp, rep, maxnew):
            history = [{"role": m["role"], "content": chat.text_of(m.get("content"))} for m in (history or [])]
            if not (message or "").strip():
                return history, ""
            if not run:
                return history + [{"role": "assistant", "content": "Choose a run first."}], message
            if board_run(root, run) is None:
                return history + [{"role": "assistant", "content": refusal("en")}], message
            try:
                res = chat.reply(run, history, message, tuned=which == "tuned", system=system or "",
                                 temperature=temp, top_k=topk, top_p=topp, repetition_penalty=rep, max_new_tokens=maxnew)
                text = res["text"] or "(empty answer: the model stopped at once)"
                if res["hit_max_new_tokens"]:
                    text += f"\n\n[hit max_new_tokens={int(maxnew)} without stopping]"
            except Exception as e:
                text = handlers.error_text(e)
            return history + [{"role": "user", "content": message}, {"role": "assistant", "content": text}], ""

        chat_inputs = [msg_tb, chatbot, run_dd, which_radio, system_tb, temp_sl, topk_sl, topp_sl, rep_sl, maxnew_sl]
        send_btn.click(on_send, chat_inputs, [chatbot, msg_tb], api_name="chat")
        msg_tb.submit(on_send, chat_inputs, [chatbot, msg_tb])
        clear_btn.click(lambda: [], None, [chatbot])
    return demo


def serve(root: str = "runs", host: str = "127.0.0.1", port: int = 7860, lang: str = "en",
          block: bool = True, allow_hosts: list[str] | None = None) -> gr.Blocks:
    from starlette.middleware import Middleware

    demo = build(root, lang)
    demo.queue(default_concurrency_limit=4)
    board_files = Path(root).resolve() / ".board"   # saved configs, uploads, histograms: the only files served
    board_files.mkdir(parents=True, exist_ok=True)
    # Requests for any other host name are refused (ui.guard.HostCheck); a run the board did not list is refused
    # by each handler (ui.guard.board_run).
    middleware = [Middleware(HostCheck, allowed=allowed_hosts(host, allow_hosts))]
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                app_kwargs={"middleware": middleware},
                css=CSS, show_error=True, quiet=False, ssr_mode=False, allowed_paths=[str(board_files)],
                footer_links=[], enable_monitoring=False, mcp_server=False)
    _host_check_outermost(demo.app)
    return demo


def _host_check_outermost(app) -> None:
    """Put HostCheck outside gradio's CORS middleware, so a refused request carries no CORS header either.

    gradio adds its CORS middleware after creating the app (outermost); the stack is rebuilt on the next
    request. Until then HostCheck already refuses, one layer further in.
    """
    ours = [m for m in app.user_middleware if m.cls is HostCheck]
    app.user_middleware[:] = ours + [m for m in app.user_middleware if m.cls is not HostCheck]
    app.middleware_stack = None


def shutdown(demo: gr.Blocks) -> None:
    jobs.stop_all()
    demo.close()
