"""Fix your data: find images whose label is probably wrong, decide what to do with each, retrain, compare."""

import streamlit as st

import cnnviz
from cnnviz import plotting
from ui import cleaning, compute, runtime
from ui.data import current_data_or_stop
from ui.session import studio

runtime.enter_page()
st.title("Fix your data")
st.write(
    "A few wrong labels teach a network wrong things. The audit trains a few quick models, each on all but a "
    "part of your training images, so every image is judged by a model that never saw it. Where those models "
    "confidently disagree with a label, the label is probably wrong (confident learning, with cleanlab). "
    "Look at each suspect, keep it, relabel it or drop it, then retrain and see what changed on the same test "
    "images. Your original data is never changed."
)
session = studio()
source, data = current_data_or_stop()
if isinstance(data, cnnviz.ImageStream):
    st.info(
        "The audit works on data held in memory; this folder is streamed from disk. Audit it with the command "
        f"line instead: `cnnviz audit {source.removeprefix('folder:')} --json`."
    )
    st.stop()
st.caption(f"Data: {data.summary()} (choose it on the Data page).")

fixing = session.fixing if session.fixing is not None and session.fixing.job.data is data else None
controls = st.columns([2, 2, 1.4], vertical_alignment="bottom")
folds = controls[0].select_slider(
    "Models (folds)", [2, 3, 4, 5], value=3, key="fix.folds", help="Each is trained on all folds but one."
)
budget = controls[1].select_slider(
    "Training time, all models together",
    cleaning.BUDGETS,
    value=60,
    key="fix.budget",
    format_func="{} s".format,
)


@st.fragment(run_every=1.0)
def audit_progress(job) -> None:
    if not job.running:
        st.rerun()
    st.progress(min(job.share, 1.0), text=job.message)
    if st.button("Stop", key="fix.stop"):
        job.stop()


if controls[2].button("Audit the labels", type="primary", key="fix.start", width="stretch"):
    if fixing is not None and fixing.job.running:
        fixing.job.stop()
    job = cleaning.AuditJob(data=data, source=source, folds=folds, budget=float(budget))
    session.fixing = fixing = cleaning.Fixing(job)
    job.start("cnnviz-audit")
if fixing is None:
    st.info(f"Press **Audit the labels**. It trains {folds} small models for {budget} s in all.")
    st.stop()
if fixing.job.running:
    audit_progress(fixing.job)
    st.stop()
if fixing.job.error:
    st.error(fixing.job.error)
    st.stop()

audit = fixing.audit
(st.success if audit.trusted else st.warning)(audit.verdict)
numbers = st.columns(5)
numbers[0].metric("Out-of-fold accuracy", f"{audit.accuracy:.1%}")
numbers[1].metric("Suspect labels", len(audit.suspects))
numbers[2].metric("Near-duplicates", len(audit.duplicates))
numbers[3].metric("Outliers", len(audit.outliers))
numbers[4].metric("Audit took", f"{audit.seconds:.0f} s")
images = cleaning.audited_images(fixing)
suspects_tab, others_tab, retrain_tab = st.tabs(
    ["Suspect labels", "Duplicates, outliers, confused classes", "Retrain and compare"]
)

with suspects_tab:
    if not audit.suspects:
        st.write("No suspects to show." if audit.trusted else "The ranking is withheld: see above.")
    else:
        bulk = st.columns(4)
        if bulk[0].button("Relabel all as suggested", key="fix.all_suggested"):
            fixing.decide_all("suggested")
        if bulk[1].button("Keep all", key="fix.all_keep"):
            fixing.decide_all("keep")
        if bulk[2].button("Drop all", key="fix.all_drop"):
            fixing.decide_all("drop")
        pages = max(1, -(-len(audit.suspects) // cleaning.PAGE_SIZE))
        page = (
            bulk[3].number_input("Page", 1, pages, 1, key="fix.page", help=f"{pages} pages")
            if pages > 1
            else 1
        )
        rows = audit.suspects[(page - 1) * cleaning.PAGE_SIZE : page * cleaning.PAGE_SIZE]
        maps = cleaning.heatmaps(fixing, rows, images)
        for start in range(0, len(rows), 4):
            for column, row, heatmap in zip(st.columns(4), rows[start : start + 4], maps[start : start + 4]):
                with column.container(border=True):
                    picture, overlay = st.columns(2)
                    picture.image(images[row["index"]], width="stretch")
                    overlay.image(compute.overlay(images[row["index"]], heatmap, 0.5), width="stretch")
                    st.caption(
                        f"**{row['file'] or 'image ' + str(row['index'])}**: labelled **{row['given']}**, "
                        f"looks like **{row['suggested']}** ({cleaning.top_classes(audit, row['index'])})"
                    )
                    options = cleaning.choices(row, audit.class_names)
                    current = fixing.decision(row)
                    picked = st.selectbox(
                        "Action",
                        options,
                        index=options.index(current) if current in options else 0,
                        key=f"fix.action.{row['index']}.{current}",
                        label_visibility="collapsed",
                    )
                    if picked != current:
                        fixing.decide(row, picked)
                        st.rerun()
        st.caption("The heatmap: where the model that never saw the image looked for the class it suggests.")
    downloads = st.columns(2)
    downloads[0].download_button(
        f"Download the changes (CSV, {len(fixing.decisions)} rows)",
        fixing.csv(),
        file_name="fixes.csv",
        mime="text/csv",
        key="fix.csv",
        help="file,given,action,new_label: `cnnviz audit FOLDER --apply fixes.csv --out fixed/` applies it.",
        disabled=not fixing.decisions,
    )
    if fixing.decisions:
        downloads[1].download_button(
            "Download the fixed data (.zip of train/ and test/ class folders)",
            fixing.zip,  # made on click
            file_name="fixed-data.zip",
            mime="application/zip",
            key="fix.zip",
        )

with others_tab:
    if audit.duplicates:
        st.markdown("**Near-duplicates**: the same image under two labels comes first (one label is wrong).")
        for row in audit.duplicates[:8]:
            left, right, words = st.columns([1, 1, 4], vertical_alignment="center")
            first, second = row["indices"]
            left.image(images[first], width="stretch")
            right.image(images[second], width="stretch")
            kind = "twice in" if row["same_label"] else "under two labels:"
            words.write(
                f"{' and '.join(row['files'] or [str(first), str(second)])}: {kind} {' / '.join(row['labels'])}"
            )
    else:
        st.write("No near-duplicates.")
    if audit.outliers:
        st.markdown("**Outliers**: far from every training image, in the network's eyes.")
        st.image(
            [images[row["index"]] for row in audit.outliers[:12]],
            caption=[f"{row['label']} ({row['score']:.1f}x)" for row in audit.outliers[:12]],
            width=96,
        )
    if audit.confused_pairs:
        st.markdown("**Most confused classes** (images the models put between the two):")
        st.dataframe(
            [
                {"classes": " / ".join(row["classes"]), "images": row["examples"]}
                for row in audit.confused_pairs
            ],
            hide_index=True,
            key="fix.pairs",
        )
    if audit.unreadable:
        st.markdown("**Unreadable files** (never ranked):")
        st.dataframe(audit.unreadable, hide_index=True, key="fix.unreadable")

with retrain_tab:
    last = session.training_job
    if last is None or last.result is None or last.data is not fixing.job.data:
        st.info(
            "Train a model on this data on the Train page first: the fixed data is retrained with its settings."
        )
        st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")
        st.stop()
    st.write(
        f"Retrain run {last.run_id}'s settings on the fixed data ({fixing.changes()} images relabelled or dropped), "
        "then compare both models on the same test images."
    )
    retrain = fixing.retrain
    if st.button(
        "Retrain with the same settings", type="primary", key="fix.retrain", disabled=not fixing.changes()
    ):
        retrain = fixing.start_retrain(last, last.result.model)

    @st.fragment(run_every=1.0)
    def retrain_progress(job) -> None:
        if not job.running:
            st.rerun()
        share, text = cleaning.retrain_share(job)
        st.progress(share, text=text)
        if st.button("Stop", key="fix.retrain_stop"):
            job.stop()

    if retrain is not None and retrain.running:
        retrain_progress(retrain)
    elif retrain is not None and retrain.error:
        st.error(retrain.error)
    elif retrain is not None and retrain.result is not None:
        comparison = cleaning.compare(fixing.before, retrain.result.model, fixing.job.data, retrain.uid)
        before, after = comparison.before, comparison.after
        scores = st.columns(3)
        scores[0].metric("Test accuracy before", f"{before.accuracy:.1%}")
        scores[1].metric(
            "After the fixes",
            f"{after.accuracy:.1%}",
            f"{(after.accuracy - before.accuracy) * 100:+.1f} points",
        )
        scores[2].metric("Predictions that changed", len(comparison.changed))
        left, middle, right = st.columns(3)
        left.plotly_chart(
            plotting.confusion_matrix_figure(before).update_layout(title="Before (original labels)"),
            key="fix.before",
        )
        middle.plotly_chart(
            plotting.confusion_matrix_figure(after).update_layout(title="After the fixes"), key="fix.after"
        )
        right.plotly_chart(
            plotting.confusion_difference_figure(comparison.difference, audit.class_names),
            key="fix.difference",
        )
        if len(comparison.changed):
            pictures, captions = cleaning.changed_captions(
                comparison, fixing.job.data.test, audit.class_names
            )
            st.markdown("**Test images whose prediction changed** (true class: before → after)")
            st.image(pictures, caption=captions, width=96)
